"""Receiving: download the ciphertext, verify everything, place the files, tell the relay.

    download (spool, resumable) -> staging (decrypt, stage, verify)
      -> place (all or nothing, durable) -> receipt + ack "verified"

``transfer.receive_one`` runs the whole job for one transfer; ``inbox`` lists
what waits on the relay and ``watch`` keeps receiving as transfers arrive.
"""
