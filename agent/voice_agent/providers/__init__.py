"""STT, LLM and TTS providers behind one interface (base.py); factory.py picks them."""
