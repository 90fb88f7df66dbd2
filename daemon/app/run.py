"""
``voiced run``: the daemon, as a systemd ``Type=notify`` service (issue 5) or by hand.

Start-up, in this order (each step says why it is where it is):

1. Logging first, with a :class:`~daemon.runtime.logs.Redactor`; the API key is registered in
   it right after the config is read and before anything else can log.
2. The config (``--config`` or /etc/voiced/voiced.toml, environment overrides, then the
   command-line overrides). A :class:`~daemon.errors.ConfigError` is one line on stderr
   and exit 78 (``EXIT_CONFIG``, in the unit's ``RestartPreventExitStatus=``); with
   ``--hw pi`` the LED blinks "error" for a few seconds first, while it can.
3. The endpoint (daemon/app/endpoints.py); "auto" without a key means the embedded local
   server, with a warning that the answers are simulated.
4. The session: continued from the state file when it is usable (resume within the
   handle's lifetime, else fresh with the conversation restored), else new.
5. Hardware (``pi``: PyAudio + gpiozero; ``sim``: WAV files + mock pins), the control
   socket in the runtime directory, then the supervisor, which starts the audio and
   runs our companions: READY=1 (config loaded, hardware open — also offline), the
   watchdog pings (only while the loop and the mic move) and STATUS=.

Signals: SIGTERM/SIGINT → STOPPING=1, the session closes the connection 1000 and
persists, the LED goes off, exit 0. SIGHUP → RELOADING=1, the config is read again,
a changed system instruction is applied mid-conversation (``supervisor.instruct``),
READY=1. Other changes need a restart (logged).

Test-only: with ``[service] debug_commands = true`` the control socket also takes
``debug-wedge-loop`` and ``debug-stall-mic`` (daemon/app/debugcommands.py) to prove the watchdog.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from daemon.app import config as config_mod
from daemon.app.config import Config
from daemon.app.controls import Controls, MuteGate, top_state
from daemon.app.debugcommands import AppControlServer
from daemon.app.endpoints import Target, resolve
from daemon.app.localvoice import local_voice
from daemon.app.pulse import Pulse
from daemon.app.statekeeper import StateKeeper
from daemon.app.toolsandhome import ToolsAndHome
from daemon.errors import ConfigError, DeviceError
from daemon.events import DeviceState
from daemon.health import floor_guards
from daemon.runtime.connection import Keepalive
from daemon.runtime.logs import Redactor, setup_logging
from daemon.runtime.service import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_SOFTWARE,
    Notifier,
    WatchdogGate,
    exit_code_for,
    format_status,
    install_signal_handlers,
    status_loop,
    watchdog_interval,
    watchdog_loop,
)
from daemon.runtime.state import StateStore
from daemon.session import Effect, OpenConnection, Persist, SendFrame, ShowStates
from daemon.wire import SetupConfig

__all__ = ["add_arguments", "main", "load_config", "show_error_led", "App"]

log = logging.getLogger(__name__)

_ERROR_LINGER = 5.0
"""Seconds the LED shows "error" before a fatal start-up exit (``--hw pi`` only)."""
_STATUS_PERIOD = 5.0
"""STATUS= is refreshed this often (ages tick); state changes update it at once."""
_WIRE_LOG_CHARS = 400


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"configuration file (default {config_mod.DEFAULT_PATH}, or $VOICED_CONFIG)",
    )
    parser.add_argument(
        "--endpoint",
        metavar="URL",
        help='override [live] endpoint: "auto", '
        '"gemini", "vertex", "local" or a ws(s):// URL (ws:// for loopback only)',
    )
    parser.add_argument("--hw", choices=("pi", "sim"), help="override [service] hw")
    parser.add_argument("--state-dir", metavar="DIR", help="override [service] state_dir")
    parser.add_argument("--runtime-dir", metavar="DIR", help="override [service] runtime_dir")
    parser.add_argument(
        "--time-scale",
        type=float,
        metavar="F",
        help="nominal seconds per wall second of the daemon's clock, for a "
        "time-scaled local server (default: [live] local_time_scale with the "
        "embedded server, else 1)",
    )
    parser.add_argument("--mic-wav", metavar="FILE", help="--hw sim: what the mic hears first")
    parser.add_argument("--speaker-wav", metavar="FILE", help="--hw sim: record replies here")


def load_config(args: argparse.Namespace, environ: Mapping[str, str]) -> Config:
    """The config file plus the command-line overrides (raises ConfigError)."""
    cfg = config_mod.load(args.config, environ)
    live, service = cfg.live, cfg.service
    if args.endpoint:
        check, allowed = config_mod.CHECKS["live.endpoint"]
        if not check(args.endpoint):
            raise ConfigError("--endpoint", args.endpoint, f"must be {allowed}")
        live = dataclasses.replace(live, endpoint=args.endpoint)
    overrides = {
        k: v
        for k, v in (
            ("hw", args.hw),
            ("state_dir", args.state_dir),
            ("runtime_dir", args.runtime_dir),
        )
        if v
    }
    service = dataclasses.replace(service, **overrides)
    return dataclasses.replace(cfg, sections={**cfg.sections, "live": live, "service": service})


_KEY_FD = "VOICED_API_KEY_FD"


def _key_out_of_environment() -> dict[str, str]:
    """Our environment, with a key given as ``VOICED_API_KEY`` moved out of it.

    ``/proc/<pid>/environ`` shows the environment the process was *started* with;
    removing the variable from ``os.environ`` does not change it. So when the key came
    that way, we re-execute ourselves (same PID: systemd's NotifyAccess=main still
    holds) without it, handing it over through an inherited pipe instead. The
    systemd credential and ``key_file`` never enter the environment at all.
    """
    env = dict(os.environ)
    fd = env.pop(_KEY_FD, None)
    if fd is not None:
        with os.fdopen(int(fd), "rb") as pipe:
            env["VOICED_API_KEY"] = pipe.read().decode("utf-8")
        os.environ.pop(_KEY_FD, None)
        return env
    key = os.environ.get("VOICED_API_KEY")
    # Only when we are the voiced program itself (console script or `python -m daemon`),
    # never when main() is called from some other program that happens to hold the key.
    ours = Path(sys.argv[0]).name in ("voiced", "__main__.py")
    if key and ours and getattr(sys, "orig_argv", None) and sys.executable:
        read, write = os.pipe()
        os.write(write, key.encode("utf-8"))  # far below the pipe buffer: never blocks
        os.close(write)
        os.set_inheritable(read, True)
        child_env = {k: v for k, v in os.environ.items() if k != "VOICED_API_KEY"}
        child_env[_KEY_FD] = str(read)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execve(sys.executable, sys.orig_argv, child_env)
        except OSError:
            os.close(read)  # carry on with the key where it was (it still works)
    return env


def main(args: argparse.Namespace) -> int:
    """``voiced run``; returns the exit code."""
    env = _key_out_of_environment()
    os.environ.pop("VOICED_API_KEY", None)
    redactor = setup_logging(logging.INFO, environ=env)
    secrets = [env["VOICED_API_KEY"]] if env.get("VOICED_API_KEY") else []
    redactor.set_secrets(secrets)
    try:
        cfg = load_config(args, env)
        if cfg.api_key:
            redactor.set_secrets([*secrets, cfg.api_key.reveal()])
        _set_level(cfg.service.log_level)
        app = App(cfg, resolve(cfg.live, cfg.api_key), redactor, args, env)
    except ConfigError as exc:
        # The config did not load, so say "error" on the LED of the hardware it names
        # (under the unit there is no --hw: issue 14), read tolerantly key by key.
        hw = (
            args.hw
            or env.get("VOICED_HW")
            or config_mod.peek("service", "hw", "pi", args.config, env)
        )
        return _fatal(
            exc, hw, led=_peek_settings("led", args, env), gpio=_peek_settings("gpio", args, env)
        )
    try:
        return asyncio.run(app.run())
    except (ConfigError, DeviceError) as exc:
        return _fatal(exc, cfg.service.hw, led=cfg.led, gpio=cfg.gpio, starting=not app.ready)
    except Exception:
        log.exception("! voiced run failed")
        return EXIT_SOFTWARE


def _set_level(level: str) -> None:
    logging.getLogger().setLevel(level)
    # websockets says "connection open/closed" at INFO for every socket (the embedded
    # server's too): that is wire detail, DEBUG only.
    logging.getLogger("websockets").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)


def _peek_settings(section: str, args: argparse.Namespace, environ: Mapping[str, str]) -> Any:
    """``[section]``'s settings from the file alone, or its defaults when that section is
    itself broken (the config as a whole failed to load)."""
    try:
        data = config_mod.peek(section, None, {}, args.config, environ)
        return config_mod.parse(
            {section: data} if isinstance(data, dict) else {}, environ
        ).sections[section]
    except ConfigError:
        return config_mod.parse({}, {}).sections[section]


def _fatal(
    exc: Exception, hw: str | None, led: Any = None, gpio: Any = None, starting: bool = True
) -> int:
    code = exit_code_for(exc, starting=starting)
    what = "configuration error" if isinstance(exc, ConfigError) else "device error"
    # One line on stderr (the journal, under systemd: `systemctl status` shows it).
    print(f"voiced: {what}: {exc}", file=sys.stderr, flush=True)
    if code == EXIT_CONFIG and hw == "pi":
        show_error_led(led, gpio=gpio)
    return code


def show_error_led(
    settings: Any = None,
    *,
    linger: float = _ERROR_LINGER,
    pin_factory: Any = None,
    gpio: Any = None,
) -> bool:
    """Blink "error" on the LED for ``linger`` seconds, if it can be opened at all
    (through ``[gpio]``'s pin factory unless one is given). Returns whether it could."""
    factory = pin_factory
    try:
        from hw.gpio import GpioSettings, open_pin_factory
        from hw.led import Led, LedSettings

        if factory is None:
            factory = open_pin_factory(gpio or GpioSettings())
        led = Led(settings or LedSettings(), pin_factory=factory)
    except Exception as exc:  # no GPIO (not a Pi), pins busy, a bad [led] section…
        log.debug("cannot show the error on the LED: %s", exc)
        if factory is not None and pin_factory is None:
            factory.close()
        return False
    try:
        log.info("showing the error on the LED for %g s", linger)
        led.show(frozenset({DeviceState.ERROR}))
        time.sleep(linger)
    finally:
        led.close()
        if pin_factory is None:
            factory.close()
    return True


class _GpioControls(Controls):
    """:class:`Controls` whose status also says how the GPIO is (``gpio``): the node
    and factory in use, or why the button and LED are off — then also as the last
    error, so STATUS= and ``voiced status`` say why the LED cannot show anything."""

    def __init__(self, *args: Any, gpio: Any = None) -> None:
        super().__init__(*args)
        self.gpio = gpio

    def status(self) -> Mapping[str, Any]:
        out = dict(super().status())
        gpio = self.gpio
        if gpio is None:
            return out
        if gpio.problem:
            out["gpio"] = f"off: {gpio.problem}"
            out["last_error"] = out.get("last_error") or f"GPIO: {gpio.problem}"
        else:
            out["gpio"] = f"{gpio.settings.pin_factory} {gpio.node}"
        return out


class App:
    """One run of the daemon: builds everything from the config and runs the supervisor."""

    def __init__(
        self,
        cfg: Config,
        target: Target,
        redactor: Redactor,
        args: argparse.Namespace,
        environ: Mapping[str, str],
    ) -> None:
        self.cfg, self.target, self.redactor = cfg, target, redactor
        self.args, self.environ = args, environ
        self.notifier = Notifier(redact=redactor.redact)
        self.ready = False
        scale = args.time_scale or (cfg.live.local_time_scale if target.local else 1.0)
        if not scale > 0:
            raise ConfigError("--time-scale", scale, "must be > 0")
        self.time_scale = scale
        self.supervisor: Any = None
        self.controls: Controls | None = None
        self.keeper: StateKeeper | None = None
        self._logged_state: str | None = None

    # -- building

    def _setup(self) -> SetupConfig:
        live = self.cfg.live
        from daemon.runtime.tools import declarations

        return SetupConfig(
            model=self.target.model,
            voice=live.voice or None,
            language=live.language or None,
            system_instruction=live.system_instruction or None,
            tools=declarations(self.cfg.tools, self.target.model),
        )

    def _dir(self, key: str) -> Path:
        path = Path(getattr(self.cfg.service, key))
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"service.{key}", str(path), f"cannot be created: {exc.strerror}"
            ) from exc
        return path

    def _hardware(self, post: Any) -> Any:
        from hw.factory import make_hardware

        c = self.cfg
        return make_hardware(
            c.service.hw,
            post,
            mic=c.mic,
            speaker=c.speaker,
            button=c.button,
            led=c.led,
            earcons=c.earcons,
            gpio=c.gpio,
            workdir=self._dir("runtime_dir"),
            sim_mic_source=self.args.mic_wav,
            sim_speaker_path=self.args.speaker_wav,
            sim_speed=1.0,
        )

    # -- running

    async def run(self) -> int:
        """Build everything, run until SIGTERM, clean up whatever was built (in reverse)."""
        async with contextlib.AsyncExitStack() as cleanup:
            await self._run(cleanup)
        log.info("x stopped (state saved %d times)", self.keeper.saves if self.keeper else 0)
        return EXIT_OK

    async def _run(self, cleanup: contextlib.AsyncExitStack) -> None:
        from daemon.runtime.supervisor import Inbox, Supervisor

        cfg, target = self.cfg, self.target
        if target.local:
            from daemon.liveserver import LiveServer, ServerLimits

            server = await LiveServer(limits=ServerLimits(time_scale=self.time_scale)).start()
            cleanup.push_async_callback(server.stop)
            target = self.target = target.at(server.endpoint())
            log.warning(
                "no API key and endpoint %r: using the embedded local Live server; "
                "answers are SIMULATED, not a model",
                cfg.live.endpoint,
            )
        log.info("endpoint %s (model %s)", target.describe(), target.model)
        # The embedded server is new in every process, so a handle saved by the last one
        # can only be refused (1008 session not found, FIELD_REPORTS): name this server
        # uniquely and the saved handle is dropped — a fresh session with the conversation
        # restored, and no expected refusal reported as the last error (issue 14).
        keeper = self.keeper = StateKeeper(
            StateStore(self._dir("state_dir")),
            server=f"local:{os.getpid()}:{time.time_ns()}" if target.local else target.endpoint.url,
            config_instruction=cfg.live.system_instruction,
            time_scale=self.time_scale,
        )
        cleanup.callback(keeper.close)  # after the supervisor's final Persist
        # Guards never shrink below what a slow machine needs in wall time (issue 14).
        # The device's own voice (espeak-ng) says announcements while offline, if installed.
        voice = local_voice()
        settings = dataclasses.replace(
            floor_guards(cfg.session, self.time_scale), local_speech=voice is not None
        )
        session = keeper.restore(settings, self._setup(), target.api)
        inbox = Inbox()
        pulse = Pulse()
        mute = MuteGate()  # the mic mute (tools, Home Assistant), reported to the core
        mute.post = inbox.post
        hardware = self._hardware(pulse.wrap(inbox.post))
        # The supervisor closes the parts when it stops; this also covers a failure before
        # it runs (every close is idempotent) and closes the mock pin factory of --hw sim.
        cleanup.callback(hardware.close)
        # [[tools]] and [mqtt] (daemon/app/toolsandhome.py): GPIO tools share the button's pin
        # factory.
        extras = ToolsAndHome(
            cfg,
            self.environ,
            pin_factory=hardware.pin_factory,
            mute=mute,
            state_dir=self._dir("state_dir"),
        )
        cleanup.callback(extras.close)
        # Pongs from Gemini come 8–30 s late (connection.Keepalive); at a time scale keep
        # at least 10 wall seconds of patience, or a busy test machine trips 1011.
        keepalive = Keepalive(30.0, max(60.0, 10.0 * self.time_scale))
        sup = self.supervisor = Supervisor(
            session,
            target.endpoint,
            inbox=inbox,
            mic=hardware.mic,
            speaker=hardware.speaker,
            button=hardware.button,
            led=hardware.led,
            time_scale=self.time_scale,
            keepalive=keepalive,
            wake_interval=0.5,
            tool_runner=extras.runner,
            speech=voice,
        )
        pulse.heartbeat = sup.heartbeat
        self.controls = _GpioControls(
            sup, target.describe(), hardware.mic, hardware.speaker, gpio=hardware.gpio
        )
        sup.subscribe(self._on_effect)
        control = AppControlServer(
            self.controls,
            self._dir("runtime_dir"),
            cfg.service.control_group or None,
            debug=cfg.service.debug_commands,
            mic=hardware.mic,
        )
        await control.start()
        cleanup.push_async_callback(control.stop)
        extras.attach(sup, self.controls, control.dispatch)
        install_signal_handlers(
            asyncio.get_running_loop(), self.notifier, stop=sup.stop, reload=self._reload
        )
        await sup.run(
            self._watch(pulse),
            status_loop(self.notifier, self.controls.status, period=_STATUS_PERIOD),
            *extras.companions(),
        )

    async def _watch(self, pulse: Pulse) -> None:
        """READY=1 (the supervisor runs companions once the hardware is open), then the
        watchdog pings from this loop, only while the gate says the pipeline moves."""
        self.ready = True
        self.notifier.ready(self._status_text())
        log.info("ready: %s", self._status_text())
        interval = watchdog_interval(self.environ)
        gate = WatchdogGate(started_at=time.monotonic())
        from hw.pastream import shared_host  # the audio devices being reopened (issue 14)

        await watchdog_loop(
            self.notifier, gate, pulse, interval=interval, lost_devices=shared_host().lost_devices
        )

    def _status_text(self) -> str:
        assert self.controls is not None
        return format_status(self.controls.status())

    def _on_effect(self, effect: Effect) -> None:
        if isinstance(effect, Persist) and self.keeper is not None:
            self.keeper.save(effect.snapshot)
        elif isinstance(effect, ShowStates):
            state = top_state(effect.states).value
            if state != self._logged_state:  # "error" stays on top while GPIO is missing
                self._logged_state = state
                log.info("= %s", state, extra={"STATE": state})
            if self.ready:
                self.notifier.status(self._status_text())
        elif isinstance(effect, SendFrame) and log.isEnabledFor(logging.DEBUG):
            # DEBUG has the wire (issue 5 item 3), except the 50-per-second mic frames.
            if not effect.frame.startswith('{"realtimeInput":{"audio"'):
                log.debug("> conn %d %s", effect.conn_id, effect.frame[:_WIRE_LOG_CHARS])
        elif isinstance(effect, OpenConnection) and log.isEnabledFor(logging.DEBUG):
            log.debug(
                "> conn %d (opening) %s", effect.conn_id, effect.setup_frame[: _WIRE_LOG_CHARS * 4]
            )

    def _reload(self) -> None:
        """SIGHUP: read the config again; apply what can change while running."""
        try:
            new = load_config(self.args, self.environ)
        except ConfigError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            self.notifier.ready(self._status_text())
            return
        old = self.cfg
        secrets = [k.reveal() for k in (old.api_key, new.api_key) if k]
        self.redactor.set_secrets(secrets)  # keep the old key redacted too
        _set_level(new.service.log_level)
        if new.live.system_instruction != old.live.system_instruction:
            log.info("system instruction changed: applying it mid-conversation")
            self.supervisor.instruct(new.live.system_instruction)
        later = [
            f"{name}.{f.name}"
            for name in new.sections
            for f in dataclasses.fields(new.sections[name])
            if getattr(new.sections[name], f.name) != getattr(old.sections[name], f.name)
            and f"{name}.{f.name}" not in ("live.system_instruction", "service.log_level")
        ]
        if later or (new.api_key != old.api_key):
            log.warning(
                "reload: %s changed; that takes effect at the next restart",
                ", ".join(later + (["the API key"] if new.api_key != old.api_key else [])),
            )
        self.cfg = new
        if self.keeper is not None:
            self.keeper.config_instruction = new.live.system_instruction
        self.notifier.ready(self._status_text())
        log.info("reloaded %s", new.source)
