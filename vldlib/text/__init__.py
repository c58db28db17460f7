"""Class texts: the paper's prompts, description sets and their cache, the LLM client, and the
class-text classifier (names + descriptions -> teacher text features)."""
