"""kiln's exception type (raised by the native module too)."""


class KilnError(RuntimeError, ValueError):
    """An error reported by kiln, with kiln's message.

    It derives from both ``RuntimeError`` and ``ValueError``: most kiln errors
    are about bad input (an unknown model name, a corrupt GGUF file, a text
    longer than the model's context with truncation off), some are about the
    machine (a thread pool that cannot start, a failed download), and code
    written for sentence-transformers catches ``ValueError``.
    """
