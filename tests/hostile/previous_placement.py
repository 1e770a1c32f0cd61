# prepend: honest.py
"""Takes the previous placement the way vLLM passes it, through a parameter the test picks
(`old_global_expert_indices=None`, or `**options`), and says what it got: PREVIOUS=None, or
PREVIOUS=<shape>,<sum>. Answers correctly.
"""
honest_answer = rebalance_experts  # noqa: F821 -- defined by honest.py, put in front of this file


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, __PARAMETER__):
    given = locals()
    previous = given.get("old_global_expert_indices", given.get("options", {}).get("old_global_expert_indices"))
    if previous is None:
        print("PREVIOUS=None", flush=True)
    else:
        print(f"PREVIOUS={tuple(previous.shape)},{int(previous.sum())}", flush=True)
    return honest_answer(weight, num_replicas, num_groups, num_nodes, num_gpus)
