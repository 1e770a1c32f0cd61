"""Proposers turn a prompt into an LLM-format response: a real model, offline mutations, or a replay."""
