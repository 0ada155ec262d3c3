"""Model: the Skyra contract and the engines that run it.

The prompt byte for byte, the output grammar, the parser of the grounded answer, P(fake) from
the answer token's log-probabilities, the artifact taxonomy (docs/model-contract.md), the
engine protocol (`engine`), vLLM behind it (`vllm_engine`, the only module that imports
vLLM), a deterministic fake, the reaper of orphaned engine processes and the tiny random
Qwen2.5-VL the tests load. Nothing here knows about policies, topics or HTTP.
"""
