"""The sealdrop client: identities, contacts, send, receive."""
