"""eplb-evolve evaluator: runs an EPLB program, isolated, on MoE load workloads and scores it.

It knows nothing of the harness; the harness uses it through `evaluator.evaluate.evaluate`
and the `evaluator.records.Evaluation` record.
"""
