"""Opens a local HTML file in headless Chromium over the DevTools pipe (no server,
no extra Python package) and reports its images and console errors.

The tests that use it skip, saying why, when no Chromium binary is found
(Debian: `apt-get install chromium`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str | None:
  env = os.environ.get("EXFIQA_CHROMIUM")
  if env:
    return env if shutil.which(env) or os.path.isfile(env) else None
  return next((p for p in map(shutil.which, NAMES) if p), None)


def require_chromium() -> str:
  path = find_chromium()
  if path is None:
    pytest.skip("no Chromium found (install Debian's `chromium` package or set EXFIQA_CHROMIUM)")
  return path


class _Pipe:
  def __init__(self, binary: str, profile: str):
    to_r, self._to_w = os.pipe()
    self._from_r, from_w = os.pipe()
    # The child reads commands on fd 3 and writes replies on fd 4 (bash moves them
    # there: no preexec function, so no fork of this multithreaded process).
    self.proc = subprocess.Popen(
      [
        "bash",
        "-c",
        f'exec "$0" "$@" 3<&{to_r} 4>&{from_w} {to_r}<&- {from_w}>&-',
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        "--remote-debugging-pipe",
        "about:blank",
      ],
      pass_fds=(to_r, from_w),
      stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL,
    )
    os.close(to_r)
    os.close(from_w)
    self._buf = b""
    self._id = 0
    self.events: list[dict] = []

  def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
    self._id += 1
    msg = {"id": self._id, "method": method, "params": params or {}}
    if session:
      msg["sessionId"] = session
    os.write(self._to_w, json.dumps(msg).encode() + b"\0")
    while True:
      reply = self._read()
      if reply.get("id") == self._id:
        if "error" in reply:
          raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})
      self.events.append(reply)

  def _read(self) -> dict:
    while b"\0" not in self._buf:
      chunk = os.read(self._from_r, 1 << 16)
      if not chunk:
        raise RuntimeError("Chromium closed the DevTools pipe")
      self._buf += chunk
    msg, self._buf = self._buf.split(b"\0", 1)
    return json.loads(msg)

  def wait_event(self, method: str, timeout: float = 30.0) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
      for e in self.events:
        if e.get("method") == method:
          return e
      self.events.append(self._read())
    raise TimeoutError(method)

  def close(self) -> None:
    try:
      self.send("Browser.close")
    except RuntimeError:
      pass
    try:
      self.proc.wait(10)
    except subprocess.TimeoutExpired:
      self.proc.kill()
      self.proc.wait()
    os.close(self._to_w)
    os.close(self._from_r)


def open_page(path: str, width: int | None = None) -> dict:
  """Loads `path` from disk (in a window `width` CSS pixels wide when given) ->
  {"images": [(src prefix, complete, naturalWidth)], "shown": [(displayed width,
  naturalWidth)] per image, "errors": [console errors, exceptions, failed loads],
  "title": str}."""
  binary = require_chromium()
  with tempfile.TemporaryDirectory() as profile:
    pipe = _Pipe(binary, profile)
    try:
      target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
      session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
        "sessionId"
      ]
      for domain in ("Page", "Runtime", "Log", "Network"):
        pipe.send(f"{domain}.enable", session=session)
      if width is not None:
        pipe.send(
          "Emulation.setDeviceMetricsOverride",
          {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
          session=session,
        )
      pipe.send("Page.navigate", {"url": "file://" + os.path.abspath(path)}, session=session)
      pipe.wait_event("Page.loadEventFired")
      result = pipe.send(
        "Runtime.evaluate",
        {
          "expression": "JSON.stringify({title: document.title, images: Array.from("
          "document.images).map(i => [i.src.slice(0, 40), i.complete, i.naturalWidth]), "
          "shown: Array.from(document.images).map(i => [i.getBoundingClientRect().width, "
          "i.naturalWidth])})",
          "returnByValue": True,
        },
        session=session,
      )
      page = json.loads(result["result"]["value"])
      errors = []
      for e in pipe.events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.exceptionThrown":
          errors.append(p["exceptionDetails"].get("text", "exception"))
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
          errors.append(str(p.get("args")))
        elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
          errors.append(p["entry"].get("text", ""))
        elif m == "Network.loadingFailed":
          errors.append(f"failed to load: {p.get('errorText')}")
      return {
        "title": page["title"],
        "images": page["images"],
        "shown": page["shown"],
        "errors": errors,
      }
    finally:
      pipe.close()
