"""Where sessions are kept: the SQLite file (``sqlite``), the never-raising wrapper the
device uses (``safe``) and where the files live (``paths``)."""
