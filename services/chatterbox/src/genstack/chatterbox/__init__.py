"""genstack.chatterbox."""
