"""The media pipeline: typed frames through small stages (one file per stage).

    inbound track -> AudioInput -> VAD -> STT -> LLM -> TTS -> AIGeneratedAudioTrack

System frames (speech start, interruption) overtake queued data frames, so barge-in never waits
behind work of the turn it cancels.
"""
