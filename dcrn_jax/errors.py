"""The one exception type for faults a user can cause and fix."""


class UserError(Exception):
  """A bad config, path, dataset, shape or resource: the message says what and what to do.

  `dcrn_jax.main` prints the message as one line and exits non-zero; programming errors are not
  wrapped in this type and keep their tracebacks.
  """


class Interrupted(UserError):
  """The user stopped a run (Ctrl-C): the message says where the work was saved.

  `dcrn_jax.main` prints the message (no `error:` prefix) and exits with code 130.
  """
