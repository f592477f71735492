"""Repository tools (not part of the package): building and checking a Hugging Face Space folder."""
