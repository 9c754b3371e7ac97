#!/usr/bin/env python3
"""Drives latch's pages in a real browser (Debian's chromium through
chromedriver and selenium) for tests/it/pages.rs. One phase per run; each
prints one JSON object on its last line. Every page visited is checked with
axe-core (no serious or critical violations) and saved as a screenshot.

usage: pages.py PHASE BASE_URL SHOTS_DIR [ARGS...]
"""
import json
import os
import sys

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

PHASE, BASE, SHOTS = sys.argv[1], sys.argv[2].rstrip("/"), sys.argv[3]
ARGS = sys.argv[4:]
AXE = open(os.environ["LATCH_AXE_JS"]).read()
found = {"pages": []}


def browser():
    opts = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--ignore-certificate-errors", "--window-size=1000,900"):
        opts.add_argument(flag)
    opts.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(options=opts, service=webdriver.ChromeService("/usr/bin/chromedriver"))


def check(d, name):
    """axe-core on the page in view, a screenshot, and the phone width."""
    d.execute_script(AXE)
    violations = d.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document).then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact}))))"
        ".catch(e => done([{id: 'axe-error: ' + e, impact: 'critical'}]));")
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    d.save_screenshot(os.path.join(SHOTS, name + ".png"))
    d.set_window_size(390, 844)
    overflow = d.execute_script("return document.documentElement.scrollWidth > window.innerWidth + 1")
    d.set_window_size(1000, 900)
    page = {"name": name, "serious": bad, "all": violations, "phone_overflow": overflow}
    if bad:
        page["source"] = d.page_source[:400]
    found["pages"].append(page)


def text(d):
    mains = d.find_elements(By.TAG_NAME, "main")
    return mains[0].text if mains else "no page: " + d.page_source[:600]


def fill(d, field_id, value):
    els = d.find_elements(By.ID, field_id)
    if not els:
        # Say which page came instead (a refusal, another step).
        raise AssertionError(f"no field {field_id!r} at {d.current_url}: {text(d)[:400]!r}")
    el = els[0]
    el.clear()
    el.send_keys(value)


def submit(d, form_action):
    """Sends the form and waits for the page it leads to."""
    click_and_wait(d, f'form[action="{form_action}"] button[type="submit"]')


def click_and_wait(d, selector):
    """Clicks and waits for the next page: every form here is a full-page
    POST, and a click returns before that page has loaded, so the next step
    could otherwise act on the old page (or cut the POST short by navigating
    away). The old page is marked and the wait ends when a loaded page lacks
    the mark. Waiting for the old element to go stale instead raced: while
    the page is swapped chromium can answer "Node with given id does not
    belong to the document", an error selenium does not take for stale."""
    d.execute_script("window.latchOldPage = true")
    d.find_element(By.CSS_SELECTOR, selector).click()
    WebDriverWait(d, 15, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return !window.latchOldPage && document.readyState === 'complete'"))


def sign_in(d, email, password):
    d.get(BASE + "/account/login")
    fill(d, "email", email)
    fill(d, "password", password)
    submit(d, "/account/login")


def username_for_password_managers(d, form_action):
    """The address a password manager files the form's new password under."""
    field = d.find_element(By.CSS_SELECTOR, f'form[action="{form_action}"] input[autocomplete="username"]')
    return field.get_attribute("value")


def phase_verify(d):
    (link,) = ARGS
    d.get(link)
    check(d, "verify-email")
    submit(d, "/verify-email")
    found["after_confirm"] = text(d)
    check(d, "verify-email-done")
    # A used link says at once that the address is confirmed: no Confirm
    # button that cannot work.
    d.get(link)
    found["after_reopen"] = text(d)
    found["confirm_offered_again"] = bool(d.find_elements(By.CSS_SELECTOR, "form[action='/verify-email']"))
    check(d, "verify-email-used")


def phase_reset(d):
    link, new_password = ARGS
    d.get(link)
    check(d, "reset-password")
    found["reset_username"] = username_for_password_managers(d, "/reset-password")
    fill(d, "new_password", new_password)
    fill(d, "confirm_password", new_password + "x")
    submit(d, "/reset-password")
    found["after_mismatch"] = text(d)
    fill(d, "new_password", new_password)
    fill(d, "confirm_password", new_password)
    submit(d, "/reset-password")
    found["after_reset"] = text(d)
    check(d, "reset-password-done")


def phase_account(d):
    email, password, changed = ARGS
    d.get(BASE + "/account/login")
    check(d, "login")
    sign_in(d, email, "not the password")
    found["after_wrong_password"] = text(d)
    sign_in(d, email, password)
    found["url_after_login"] = d.current_url
    found["sessions_before"] = len(d.find_elements(By.CSS_SELECTOR, "tbody tr"))
    check(d, "account")
    click_and_wait(d, 'form[action^="/account/sessions/"] button')
    found["sessions_after"] = len(d.find_elements(By.CSS_SELECTOR, "tbody tr"))
    found["change_username"] = username_for_password_managers(d, "/account/password")
    fill(d, "current_password", password)
    fill(d, "new_password", changed)
    fill(d, "confirm_password", changed)
    submit(d, "/account/password")
    found["after_change"] = text(d)
    found["cookies"] = [{"name": c["name"], "secure": c.get("secure"), "httpOnly": c.get("httpOnly"),
                         "sameSite": c.get("sameSite")} for c in d.get_cookies()]


def phase_totp(d):
    email, password = ARGS
    # The codes come on stdin: the test computes them with pyotp from the
    # key this page shows.
    sign_in(d, email, password)
    submit(d, "/account/totp")
    check(d, "totp-setup")
    # Shown in groups of four; the app takes it with or without the spaces.
    found["totp_secret"] = d.find_element(By.CSS_SELECTOR, "main code").text.replace(" ", "")
    print(json.dumps({"need_code_for": found["totp_secret"]}), flush=True)
    code = sys.stdin.readline().strip()
    fill(d, "code", code)
    submit(d, "/account/totp/confirm")
    found["recovery_codes"] = [e.text for e in d.find_elements(By.CSS_SELECTOR, ".codes code")]
    if not found["recovery_codes"]:
        raise AssertionError(f"the code was not taken: {text(d)[:400]!r}")
    check(d, "recovery-codes")
    d.get(BASE + "/account")
    submit(d, "/account/logout")
    sign_in(d, email, password)
    check(d, "second-step")
    print(json.dumps({"need_code_for": found["totp_secret"], "next": True}), flush=True)
    fill(d, "code", sys.stdin.readline().strip())
    submit(d, "/account/login/mfa")
    found["url_after_second_step"] = d.current_url
    # A new phone: turn it off with a recovery code, then it is offered again.
    check(d, "account-with-totp")
    fill(d, "off_password", password)
    fill(d, "off_code", found["recovery_codes"][0])
    submit(d, "/account/totp/off")
    found["after_turn_off"] = text(d)
    check(d, "totp-off")
    d.get(BASE + "/account")
    found["set_up_offered_again"] = len(d.find_elements(By.CSS_SELECTOR, 'form[action="/account/totp"]')) == 1


def main():
    os.makedirs(SHOTS, exist_ok=True)
    d = browser()
    try:
        {"verify": phase_verify, "reset": phase_reset, "account": phase_account, "totp": phase_totp}[PHASE](d)
    finally:
        d.quit()
    print(json.dumps(found))


main()
