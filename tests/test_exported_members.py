from __future__ import annotations

import fastapi_authgate


def test_all_is_sorted_and_complete() -> None:
    exported = fastapi_authgate.__all__
    assert exported == sorted(exported)
    for name in exported:
        assert hasattr(fastapi_authgate, name), name
    public = {
        name
        for name, value in vars(fastapi_authgate).items()
        if not name.startswith("_")
        and getattr(value, "__module__", "").startswith("fastapi_authgate")
    }
    assert public <= set(exported), public - set(exported)


def test_public_objects_are_stable() -> None:
    from fastapi_authgate import dependencies

    assert fastapi_authgate.require_user is dependencies.require_user
    assert fastapi_authgate.require_session is dependencies.require_session
    assert fastapi_authgate.optional_user is dependencies.optional_user


def test_redis_extra_is_not_imported_by_the_package() -> None:
    import subprocess
    import sys

    code = "import sys, fastapi_authgate; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
