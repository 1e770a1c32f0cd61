"""Proposers turn a prompt into an LLM-format reply (a real model through `openai`, offline
mutations, or a replay of a recorded run); `prompts` builds the chat messages they are sent."""

from harness.proposers.base import BudgetExhausted, Proposal, ProposalRequest, Proposer, ProposerError, prompt_hash

__all__ = ["Proposal", "ProposalRequest", "Proposer", "ProposerError", "BudgetExhausted", "prompt_hash"]
