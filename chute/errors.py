"""chute's exceptions, in one small hierarchy: every one is a ChuteError, and what a handler
does with it follows from its family.

- Unavailable (a ConnectionError): the broker or the database is out of reach. Retrying
  later may work; chute.runtime.service.run_with_reconnect waits and starts again, and
  the handlers let every ConnectionError through for it, never counting it against a file.
- DeclarationError (a ValueError): the configuration or a dataset's declaration is
  wrong. The service stops at start with one line.
- FileProblem: one file cannot be used, or cannot be finished now. It is recorded on
  that file, which is quarantined or failed or tried again, and nothing else stops.
- WorkerStops: this worker cannot go on (its data folder, a signal); others may.
"""

from __future__ import annotations


class ChuteError(Exception):
    """Every exception of chute's own."""


class Unavailable(ChuteError, ConnectionError):
    """A peer cannot be reached or dropped us; retrying later may work."""


class BrokerUnavailable(Unavailable):
    """The broker cannot be reached or dropped us; retrying later may work."""


class DatabaseUnavailable(Unavailable):
    """PostgreSQL cannot be reached or dropped us; retrying later may work."""


class DeclarationError(ChuteError, ValueError):
    """The configuration or a declaration cannot be used; the message names the setting."""


class ConfigError(DeclarationError):
    """A variable has a value chute cannot use; the message names it."""


class DatasetsError(DeclarationError):
    """The datasets file cannot be used; str(e) is the one line start-up prints."""


class TypeDeclarationError(DeclarationError):
    """A declared type that is not one of ours; str(e) is one line."""


class RuleDeclarationError(DeclarationError):
    """A rule that cannot apply to its column; str(e) names the rule."""


class DeclarationRefused(DeclarationError):
    """The database cannot take a declaration as it stands; str(e) is one line."""


class FileProblem(ChuteError):
    """One file cannot be used as it is, or cannot be finished now."""


class FileUnusable(FileProblem):
    """The file cannot be used as a whole (it is quarantined); str(e) is the reason."""


class HeaderError(FileProblem, ValueError):
    """The file cannot be used as a whole; str(e) is a reason a person understands."""


class FileChanged(FileProblem):
    """The file's bytes are not the ones hashed when it was claimed: its row ids and
    batches would not match what may already be loaded, so it is failed, not loaded."""


class MoveFailed(FileProblem):
    """A finished file could not leave work/ now; it is recorded, and tried again later."""


class MessageDecodeError(FileProblem, ValueError):
    """A body that can never be decoded: it goes to the dead-letter queue."""


class RetryError(FileProblem):
    """The file cannot be retried; str(e) says why."""


class WorkerStops(ChuteError):
    """This worker cannot go on; the message in hand goes back to its queue."""


class DataFolderUnusable(WorkerStops):
    """This process cannot write the data folder: no file can be taken or finished, so
    the worker stops with this one line rather than failing file after file."""


class DeclarationStale(WorkerStops):
    """The dataset's table was rebuilt under a declaration of another shape than this
    worker's (it started before the datasets file changed): it must restart with the
    current file. Nothing of the batch in hand is written."""


class RebuildError(ChuteError):
    """`chute rebuild` or `chute replay` cannot go on; str(e) says why, in one line."""


class Interrupted(WorkerStops):
    """SIGTERM arrived in the middle of a long message: stop now, leave it unacknowledged.

    The broker hands it to another worker; every handler is idempotent, so the work
    already done is not done twice in effect.
    """
