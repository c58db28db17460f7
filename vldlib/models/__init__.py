"""The networks: teachers (open_clip CLIP, the ConSE proxy) and students (registries by name)."""
