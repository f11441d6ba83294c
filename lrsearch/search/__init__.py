"""The search engine: sampling rates, running trials in worker processes."""
