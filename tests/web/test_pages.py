"""Server-rendered pages: login, forms from the protocol, errors beside fields, CSRF."""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from stalwart.capture.users import UserStore

Counts = Callable[[Engine], dict[str, int]]
PASSWORD = "a long test password"


def _login_token(client: TestClient) -> str:
    """The login form's CSRF token (its cookie is now in the client's jar)."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert match
    return match.group(1)


def _login(client: TestClient, users: UserStore, role: str, site: str | None) -> str:
    name = f"{role}.page"
    users.add_user(name, PASSWORD, role, "test-setup", site=site)
    form = {"username": name, "password": PASSWORD, "csrf_token": _login_token(client)}
    r = client.post("/login", data=form, follow_redirects=False)
    assert r.status_code == 303 and "stalwart_session" in r.cookies
    assert "httponly" in r.headers["set-cookie"].lower()
    page = client.get("/screening").text
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return match.group(1)


def _screening_form(csrf: str, number: str, **overrides: str) -> dict[str, str]:
    form = {
        "csrf_token": csrf,
        "site": "US01",
        "screening_number": number,
        "consent_date": "2006-01-02",
        "screening_date": "2006-01-02",
        "age": "35",
        "sex": "M",
        "hiv_positive": "true",
        "cd4": "520",
        "hiv_rna": "20000",
        "on_continuous_art": "false",
        "arv_within_12_months": "false",
        "prior_il2": "false",
        "haart_access": "true",
        "prior_aids": "false",
        "immunomodulator_8_weeks": "false",
    }
    return form | overrides


def test_pages_need_a_login(client: TestClient) -> None:
    r = client.get("/worklist", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    page = client.get("/login").text
    assert '<label for="f-username">' in page and '<label for="f-password">' in page
    form = {"username": "nobody", "password": "x", "csrf_token": _login_token(client)}
    r = client.post("/login", data=form)
    assert r.status_code == 401 and "unknown user or wrong password" in r.text


def test_login_form_needs_its_csrf_token(client: TestClient, users: UserStore) -> None:
    users.add_user("coord.csrf", PASSWORD, "site_coordinator", "test-setup", site="US01")
    good = {"username": "coord.csrf", "password": PASSWORD}
    token = _login_token(client)
    for form in (good, good | {"csrf_token": "forged"}):
        r = client.post("/login", data=form, follow_redirects=False)
        assert r.status_code == 403 and "stalwart_session" not in r.cookies
        assert "did not come from this site" in r.text
    # a cross-site form cannot read the cookie; without the cookie the right token fails too
    client.cookies.delete("stalwart_login_csrf", path="/login")
    r = client.post("/login", data=good | {"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 403
    r = client.post(
        "/login", data=good | {"csrf_token": _login_token(client)}, follow_redirects=False
    )
    assert r.status_code == 303
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie


def test_session_cookie_is_secure_over_https(client: TestClient, users: UserStore) -> None:
    users.add_user("coord.tls", PASSWORD, "site_coordinator", "test-setup", site="US01")
    page = client.get("https://testserver/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token and "secure" in page.headers["set-cookie"].lower()
    r = client.post(
        "https://testserver/login",
        data={"username": "coord.tls", "password": PASSWORD, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    session_cookie = [c for c in r.headers.get_list("set-cookie") if "stalwart_session=" in c]
    assert session_cookie and "secure" in session_cookie[0].lower()


def test_screening_form_is_rendered_from_the_protocol(
    client: TestClient, users: UserStore, engine: Engine, row_counts: Counts
) -> None:
    csrf = _login(client, users, "site_coordinator", "US01")
    page = client.get("/screening").text
    for label in ("Screening CD4+ count (cells/mm3)", "Currently on continuous antiretroviral"):
        assert label in page
    assert page.count("<label for=") >= 14
    assert '<option value="GB01"' not in page  # only the user's site

    before = row_counts(engine)
    r = client.post("/screening", data=_screening_form(csrf, "P-1", cd4="lots", age=""))
    assert r.status_code == 422
    assert re.search(
        r'id="f-cd4-error" role="alert">Screening CD4\+ count \(cells/mm3\): enter a number '
        r"\(you entered &#39;lots&#39;\)<",
        r.text,
    )
    assert re.search(r'id="f-age-error" role="alert">Age \(years\) is required<', r.text)
    assert 'aria-invalid="true"' in r.text and 'value="lots"' in r.text
    r = client.post("/screening", data=_screening_form(csrf, "P-1", cd4="9000"))
    assert r.status_code == 422 and "outside the valid range 0 to 5,000 cells/mm3" in r.text
    assert row_counts(engine) == before

    r = client.post("/screening", data=_screening_form(csrf, "P-1", cd4="250"))
    assert r.status_code == 200 and "IN2 not met: CD4+ count &gt;= 300" in r.text
    r = client.post("/screening", data=_screening_form(csrf, "P-2"))
    assert "P-2 is eligible" in r.text


def test_post_without_csrf_token_is_refused(
    client: TestClient, users: UserStore, engine: Engine, row_counts: Counts
) -> None:
    csrf = _login(client, users, "site_coordinator", "US01")
    before = row_counts(engine)
    form = _screening_form(csrf, "P-1")
    del form["csrf_token"]
    assert client.post("/screening", data=form).status_code == 403
    assert client.post("/screening", data=form | {"csrf_token": "x"}).status_code == 403
    assert row_counts(engine) == before


def test_randomize_then_visit_form_with_errors_beside_fields(
    client: TestClient, users: UserStore, engine: Engine, row_counts: Counts
) -> None:
    csrf = _login(client, users, "investigator", "US01")
    # consent first: the screening form asks for it, before the screening procedures
    r = client.post("/screening", data=_screening_form(csrf, "P-1", consent_date=""))
    assert r.status_code == 422
    assert re.search(r'id="f-consent_date-error" role="alert">Date of informed consent is', r.text)
    r = client.post("/screening", data=_screening_form(csrf, "P-1", consent_date="2099-01-01"))
    assert r.status_code == 422 and "2099-01-01 is in the future" in r.text
    client.post("/screening", data=_screening_form(csrf, "P-1"))
    r = client.get("/randomize/P-1")
    assert r.status_code == 200 and "Consent recorded on 2006-01-02" in r.text
    r = client.post("/randomize/P-1", data={"csrf_token": csrf, "randomization_date": "2006-01-05"})
    assert r.status_code == 200 and "Randomized to" in r.text and "WK32 Week 32" in r.text
    usubjid = re.search(r"<h1>(STALWART-US01-\d+)</h1>", r.text)
    assert usubjid
    u = usubjid.group(1)
    page = client.get(f"/participants/{u}/visits/WK04").text
    assert '<label for="f-LAB-CD4">CD4+ count (cells/mm3)' in page
    assert "below the assay limit enter &lt;50" in page

    before = row_counts(engine)
    form = {"csrf_token": csrf, "visit_date": "2006-02-02", "LAB.CD4": "50000", "LAB.HIVRNA": "<50"}
    r = client.post(f"/participants/{u}/visits/WK04", data=form)
    assert r.status_code == 422
    assert re.search(r'id="f-LAB-CD4-error" role="alert">50,000 cells/mm3 is outside', r.text)
    assert row_counts(engine) == before
    r = client.post(f"/participants/{u}/visits/WK04", data=form | {"LAB.CD4": "500"})
    assert r.status_code == 200 and "Visit date 2006-02-02" in r.text and "Not signed" in r.text
    r = client.post(f"/participants/{u}/visits/WK04", data=form | {"LAB.CD4": "510"})
    assert r.status_code == 422
    assert re.search(r'id="f-reason-error" role="alert">Reason is required<', r.text)
    r = client.post(
        f"/participants/{u}/visits/WK04/sign",
        data={"csrf_token": csrf, "meaning": "I approve", "password": "wrong"},
    )
    assert r.status_code == 401 and "signer&#39;s own password" in r.text
    r = client.post(
        f"/participants/{u}/visits/WK04/sign",
        data={"csrf_token": csrf, "meaning": "I approve", "password": PASSWORD},
    )
    assert "Signed by investigator.page" in r.text
    trail = client.get(f"/participants/{u}/visits/WK04/audit").text
    # two writes: the visit saved (its date and two results), then the signature
    assert trail.count('<tbody class="audit-entry') == 2
    assert ">entered<" in trail and ">signed<" in trail and "CD4+ count" in trail
    assert client.get(f"/participants/{u}").status_code == 200
    assert client.get("/worklist").status_code == 200
    assert client.get("/participants").status_code == 200


def test_role_pages(client: TestClient, users: UserStore) -> None:
    _login(client, users, "statistician_blinded", None)
    r = client.get("/", follow_redirects=False)
    assert r.headers["location"] == "/summary"
    page = client.get("/summary").text
    assert "All participants (pooled)" in page and "By arm" not in page
    assert client.get("/summary?by_arm=true").status_code == 403
    assert client.get("/participants").status_code == 403
