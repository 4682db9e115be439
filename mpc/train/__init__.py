"""Training loops on the torch lowering (backends/torch_backend.py): MP fine-tuning (finetune)."""
