"""The profile folder (``--home``): its layout and the local stores kept in it.

``layout`` names every file and folder under HOME; each other module here owns
one of them: the identity, the relay pin (config), contacts, the replay store,
the receipts of received transfers, the outbox of unfinished sends and the
download spool. ``session`` unlocks a profile for the relay-facing commands.
"""
