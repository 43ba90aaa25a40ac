"""TEMPORARY."""


class SignatureRejected(Exception):
    def __init__(self, reason, message):
        super().__init__(message)
        self.reason, self.message = reason, message
