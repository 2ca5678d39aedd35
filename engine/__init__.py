"""The model runtime both tiers share: config, loaders, model, tokenizer, generation."""
