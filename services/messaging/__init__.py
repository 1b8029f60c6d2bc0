"""The message bus both services run: the MFA service publishes on it, the notifier consumes it.

`contracts/` holds only what is published (event types, schemas, documents); the adapter that
puts those messages on RabbitMQ (or the in-process bus) is code both services run, so it lives
here, outside either service.
"""
