"""Fine-tune and evaluate: `hearth finetune` trains a LoRA adapter on the CPU and exports it as a GGUF the
engine serves (lifecycle/adapters.py); `hearth eval` scores models and adapters through a running gateway.

Training needs the optional extra `hearth[finetune]` (torch, transformers, peft), imported only by the
commands that train: the gateway never imports it.
"""
