"""The check several command-line tests share: a command refused in one line, exit code 2."""

from __future__ import annotations


def refused(capsys, argv, *words) -> str:
    """Run ``argv``; expect exit code 2 and one line on stderr holding every one of ``words``."""
    from unet_course import cli

    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], (code, err)
    for word in words:
        assert word in err[0], (word, err[0])
    return err[0]
