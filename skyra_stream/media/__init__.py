"""Media: how an upload's bytes become the frames the model sees.

Fetching from allowlisted buckets (bounded, retried, hashed on the way), decoding 16 frames
with PyAV (or taking pre-extracted images), reading C2PA content credentials, perceptual
fingerprints, the CPU budget for decoding, and the synthetic videos tests and the demo use.
Nothing here knows about the model, policies or Kafka.
"""
