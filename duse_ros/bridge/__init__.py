"""The LLM bridge without ROS: stabilise EmotionState readings, build dialogue prompts from YAML
templates, and (optionally) ask an OpenAI-compatible endpoint, off the caller's thread.

    stabiliser.py   readings -> stable emotion (min confidence, hysteresis, dwell, unknown state)
    prompts.py      YAML templates + stable state + user utterance (as data) -> system/user prompt
    core.py         Bridge: the above plus heartbeat, staleness and utterance age
    llm_client.py   chat-completions client (stdlib urllib), retries, endpoint statistics
    worker.py       one request in flight, the newest pending one supersedes older ones
    settings.py     the node's parameters, defaults and validation
"""
