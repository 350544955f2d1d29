"""Child-process entry point: run ``img2dataset.download(**kwargs)`` for one slice.

``python -m curation.downloading.img2dataset_child KWARGS.json``. It exists because a Dask worker cannot call
``img2dataset.download`` itself: tasks run in a worker *thread* (img2dataset installs a SIGINT
handler, which only the main thread may do) inside a *daemonic* process (img2dataset starts a
logger process and a process pool, which daemonic processes may not do). A fresh interpreter has
neither restriction, on a LocalCluster or on any remote cluster, with no worker configuration.

It also puts the download policy in force (:mod:`curation.downloading.fetch`: public addresses
only, http(s) redirects only, ``--max-image-bytes``, a per-image deadline): img2dataset fetches every
URL through the module-level function ``img2dataset.downloader.download_image``, which is replaced
here by one that calls :func:`~curation.downloading.fetch.fetch`. img2dataset downloads in *spawned*
pool processes, which re-import this module as ``__mp_main__``; the policy travels to them in the
``CURATION_FETCH_POLICY`` environment variable and is installed again at that import.
"""

from __future__ import annotations

import io
import json
import os
import sys

from curation.downloading.fetch import FetchPolicy, fetch

POLICY_ENV = "CURATION_FETCH_POLICY"
_USER_AGENT = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:72.0) Gecko/20100101 Firefox/72.0"  # img2dataset's


def install_fetch_policy(policy: FetchPolicy) -> None:
    """Make img2dataset fetch every URL through :func:`fetch` under ``policy`` (in this process)."""
    from img2dataset import downloader

    def download_image(row, timeout, user_agent_token, disallowed_header_directives):
        key, url = row
        agent = _USER_AGENT + (f" (compatible; {user_agent_token}; +https://github.com/rom1504/img2dataset)"
                               if user_agent_token else "")

        def robots(headers):
            if disallowed_header_directives and downloader.is_disallowed(
                    headers, user_agent_token, disallowed_header_directives):
                return "Use of image disallowed by X-Robots-Tag directive"
            return None

        try:
            return key, io.BytesIO(fetch(url, policy, timeout, {"User-Agent": agent}, robots)), None
        except Exception as err:  # noqa: BLE001 - img2dataset's contract: the message becomes the row's error
            return key, None, str(err)

    downloader.download_image = download_image


if __name__ == "__mp_main__" and os.environ.get(POLICY_ENV):  # a spawned img2dataset pool process
    install_fetch_policy(FetchPolicy(**json.loads(os.environ[POLICY_ENV])))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m curation.downloading.img2dataset_child KWARGS.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as fh:
        kwargs = json.load(fh)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    policy = FetchPolicy(**json.loads(os.environ.get(POLICY_ENV) or "{}"))  # no policy given: the safe defaults
    os.environ[POLICY_ENV] = json.dumps(policy.to_dict())
    import img2dataset  # imported here: slow (~2 s), and only the child needs it

    install_fetch_policy(policy)
    img2dataset.download(**kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
