"""
In-memory transports for tunnel tests: a L{StringTransport} that knows
half-close and records the mistakes a relay can make with producers.
"""

from __future__ import annotations

from twisted.internet.testing import StringTransport


class HalfCloseTransport(StringTransport):
    """
    A L{StringTransport} with C{loseWriteConnection}, pause state and a
    record of closes made while a producer was still registered (a real TCP
    transport would hold such a close until the producer resumed; TLS would
    not send C{close_notify}).

    @ivar writeClosed: C{loseWriteConnection} was called.
    @ivar aborted: C{abortConnection} was called.
    @ivar closedWithProducer: a close or half-close was asked for while a
        producer was registered.
    @ivar paused: reading is paused (C{pauseProducing} more recently than
        C{resumeProducing}).
    """

    def __init__(self) -> None:
        super().__init__()
        self.writeClosed = False
        self.aborted = False
        self.closedWithProducer = False
        self.paused = False

    def loseWriteConnection(self) -> None:
        """
        Record a half-close.
        """
        if self.producer is not None:
            self.closedWithProducer = True
        self.writeClosed = True

    def loseConnection(self) -> None:
        """
        Record a close.
        """
        if self.producer is not None:
            self.closedWithProducer = True
        super().loseConnection()

    def abortConnection(self) -> None:
        """
        Record an abort.
        """
        self.aborted = True
        super().abortConnection()

    def pauseProducing(self) -> None:
        """
        Record that reading is paused.
        """
        self.paused = True
        super().pauseProducing()

    def resumeProducing(self) -> None:
        """
        Record that reading resumed.
        """
        self.paused = False
        super().resumeProducing()

