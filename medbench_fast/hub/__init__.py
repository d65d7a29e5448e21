"""Hugging Face Hub: medical task definitions, model tracking, Hub models in runs, publishing.

Everything goes through the real ``huggingface_hub`` client, configured at call time from
the environment (``HF_ENDPOINT``, ``HF_TOKEN`` or the login store, ``HF_HUB_OFFLINE``,
``HF_HOME``/``HF_HUB_CACHE``); see :mod:`medbench_fast.hub.client`. The token is never
printed, logged or written.
"""
