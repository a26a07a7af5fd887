"""The media pipeline: typed frames through small stages (one file per stage).

    inbound track -> VAD -> STT -> barge-in gate -> LLM -> TTS -> AIGeneratedAudioTrack

System frames (speech start, interruption) overtake queued data frames, so barge-in never waits
behind work of the turn it cancels. Every frame a stage pushes or reports is also seen by the
observers (turn state, metrics, history, client events): facts about a turn travel one way only.
"""
