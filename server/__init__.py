"""The blind relay: stores ciphertext and minimal metadata, never decrypts."""
