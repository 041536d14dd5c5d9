"""Second opinions on the relay's log: the witness service (C2SP tlog-witness),
the client's cosignature policy, and the split-view comparison of two checkpoints."""
