"""Model families and model building: what is specific to Llama, Qwen2, Mistral, GLM-4 ... lives here, one file each."""
