"""Where sessions are kept: the SQLite file (``sqlite``), the never-raising wrapper the
device uses (``safe``), the one interface both are (``protocol.SessionStore``) and where
the files live (``paths``)."""
