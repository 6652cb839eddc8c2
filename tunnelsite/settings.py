"""Luminet server settings: the only module that reads the environment."""

from __future__ import annotations

import os
import resource
import socket
import warnings
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from tunnelsite.connections import parse_networks
from tunnelsite.databases import parse_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name, "")
    return value if value != "" else default


def env_bool(name: str, default: bool = False) -> bool:
    value = env_str(name)
    if value is None:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(name: str, default: int) -> int:
    value = env_str(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None
    if number <= 0:
        raise ImproperlyConfigured(f"{name} must be positive, not {value!r}")
    return number


DEFAULT_BLOCKED_SUBDOMAINS = (
    "www,admin,administrator,api,app,auth,account,accounts,billing,blog,cdn,console,"
    "dashboard,docs,ftp,help,imap,login,mail,media,ns1,ns2,pop,pop3,root,security,smtp,"
    "sso,static,status,support,tunnel,tunnels,webmail"
)


def parse_names(value: str) -> frozenset[str]:
    names = frozenset(name.strip().lower() for name in value.split(",") if name.strip())
    if bad := sorted(name for name in names if not name.replace("-", "").isalnum()):
        raise ImproperlyConfigured(f"LUMINET_BLOCKED_SUBDOMAINS: not names: {', '.join(bad)}")
    return names


def _default_max_connections() -> int:
    """Nine tenths of the open-file limit: room for the database, Redis and logs."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 10_000
    return max(16, min(10_000, soft * 9 // 10))


def env_count(name: str, default: int) -> int:
    """A whole number that may be 0 (a limit: 0 means none)."""
    value = env_str(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None
    if number < 0:
        raise ImproperlyConfigured(f"{name} must be 0 (no limit) or more, not {value!r}")
    return number


def env_float(name: str, default: float, zero: bool = False) -> float:
    """A positive number of seconds (or 0 too, with ``zero``: the feature is off)."""
    value = env_str(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None
    if number < 0 or (number == 0 and not zero) or number != number:
        least = "0 or more" if zero else "positive"
        raise ImproperlyConfigured(f"{name} must be {least}, not {value!r}")
    return number


def parse_bind(name: str, value: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"`` or ``"[::1]:9464"`` as an address and a port."""
    parts = urlsplit(f"//{value}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise ImproperlyConfigured(f"{name}: not ADDRESS:PORT: {value!r}")
    return parts.hostname, port


def parse_public_url(value: str) -> tuple[str, str, int | None]:
    """Split LUMINET_PUBLIC_URL into scheme, tunnel domain and port."""
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ImproperlyConfigured(
            f"LUMINET_PUBLIC_URL must look like https://tunnel.example.com, not {value!r}"
        )
    if parts.path not in {"", "/"} or parts.query or parts.username:
        raise ImproperlyConfigured("LUMINET_PUBLIC_URL must be a bare origin (no path or user)")
    return parts.scheme, parts.hostname.lower(), parts.port


def read_secret_key(path: Path) -> str | None:
    """The key `make serve` keeps in var/secret_key, so every manage.py command of the
    embedded default finds it without exporting SECRET_KEY."""
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


DEBUG = env_bool("DEBUG")
SECRET_KEY = env_str("SECRET_KEY") or read_secret_key(BASE_DIR / "var" / "secret_key")
if SECRET_KEY is None:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is required unless DEBUG=true: set it in the environment "
            "(`make serve` keeps one in var/secret_key)"
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"

LUMINET_PUBLIC_URL = (env_str("LUMINET_PUBLIC_URL") or "http://localhost:8000").rstrip("/")
LUMINET_PUBLIC_SCHEME, LUMINET_TUNNEL_DOMAIN, LUMINET_PUBLIC_PORT = parse_public_url(
    LUMINET_PUBLIC_URL
)
# Seconds to wait for the local server's response to *start*.
LUMINET_REQUEST_TIMEOUT = env_float("LUMINET_REQUEST_TIMEOUT", 30.0)
# Slow and many-connection attacks (tunnelsite.connections): seconds for a request
# head, bytes a second a started body must keep up, connections per address and in
# all. Proxies in front (Caddy) are exempt from the per-address cap.
LUMINET_HEADER_TIMEOUT = env_float("LUMINET_HEADER_TIMEOUT", 20.0)
LUMINET_MIN_BODY_RATE = env_float("LUMINET_MIN_BODY_RATE", 1024.0)
LUMINET_STALL_TIMEOUT = env_float("LUMINET_STALL_TIMEOUT", 60.0)
LUMINET_MAX_CONNECTIONS_PER_ADDRESS = env_int("LUMINET_MAX_CONNECTIONS_PER_ADDRESS", 256)
LUMINET_MAX_CONNECTIONS = env_int("LUMINET_MAX_CONNECTIONS", _default_max_connections())
try:
    LUMINET_TRUSTED_PROXIES = parse_networks(env_str("LUMINET_TRUSTED_PROXIES") or "")
except ValueError as exc:
    raise ImproperlyConfigured(f"LUMINET_TRUSTED_PROXIES: {exc}") from None
# Bytes of public traffic one process holds in memory (tunnels.edge.budget):
# request bodies waiting for a tunnel's window and WebSocket messages. Past the
# limit, uploads wait (TCP backpressure) and WebSockets close with 1013.
LUMINET_MEMORY_BUDGET = env_int("LUMINET_MEMORY_BUDGET", 512 * 1024 * 1024)
LUMINET_TUNNEL_MEMORY_BUDGET = env_int("LUMINET_TUNNEL_MEMORY_BUDGET", 64 * 1024 * 1024)
# Requests and WebSockets one tunnel has open at once; one more gets 503 tunnel-busy.
LUMINET_MAX_STREAMS_PER_TUNNEL = env_int("LUMINET_MAX_STREAMS_PER_TUNNEL", 512)
# Largest request body the main host (admin, health) takes; tunnel bodies stream
# through their window and have no limit of ours.
LUMINET_MAX_BODY_BYTES = env_int("LUMINET_MAX_BODY_BYTES", 1024 * 1024)
# Most of a body the edge holds to check a generic (hmac:) webhook signature; the
# named providers have their own caps (tunnels.edge.webhooks).
LUMINET_WEBHOOK_MAX_BYTES = env_int("LUMINET_WEBHOOK_MAX_BYTES", 1024 * 1024)
# Names no client may ask for (--subdomain): comma-separated; the default keeps
# the usual service names from posing as the operator's own.
LUMINET_BLOCKED_SUBDOMAINS = parse_names(
    env_str("LUMINET_BLOCKED_SUBDOMAINS", DEFAULT_BLOCKED_SUBDOMAINS) or ""
)
# Seconds a disconnected tunnel's subdomain stays reserved for its token.
LUMINET_SUBDOMAIN_GRACE = env_float("LUMINET_SUBDOMAIN_GRACE", 60.0)
# Seconds between a live tunnel's registry refresh and token re-check: a revoked
# token's tunnel closes within one, a crashed process's subdomains free within three.
LUMINET_HEARTBEAT_INTERVAL = env_float("LUMINET_HEARTBEAT_INTERVAL", 15.0)
# Seconds between two writes of each process's usage counts (per token and day) to
# the database; the admin's usage figures lag by up to this much.
LUMINET_USAGE_FLUSH_SECONDS = env_float("LUMINET_USAGE_FLUSH_SECONDS", 30.0)
# Seconds between two "stats:" lines in the log (asyncio tasks, connections, budget
# held), for the soak (issue 8) and for watching a server; unset: no such line.
LUMINET_STATS_INTERVAL = env_float("LUMINET_STATS_INTERVAL", 0.0)
# ADDRESS:PORT on which this process serves its Prometheus metrics without an API
# key (the address is the protection: loopback, or a private network); unset: only
# /metrics on the main host, with an API key. Each process needs its own.
_metrics_bind = env_str("LUMINET_METRICS_BIND")
LUMINET_METRICS_BIND = parse_bind("LUMINET_METRICS_BIND", _metrics_bind) if _metrics_bind else None
# Limits (tunnels.limits), counted in fixed windows of LUMINET_LIMIT_WINDOW_SECONDS,
# in Redis when REDIS_URL is set so they hold across processes. Requests per window
# to one tunnel (0: none; a token's own rate_limit overrides it), tunnels one token
# may have live at once (0: any number), and failed tunnel authentications per
# source address per window, past which its tunnel handshakes get 429.
LUMINET_TUNNEL_RATE_LIMIT = env_count("LUMINET_TUNNEL_RATE_LIMIT", 0)
LUMINET_TUNNELS_PER_TOKEN = env_count("LUMINET_TUNNELS_PER_TOKEN", 0)
LUMINET_AUTH_FAILURE_LIMIT = env_count("LUMINET_AUTH_FAILURE_LIMIT", 20)
LUMINET_LIMIT_WINDOW_SECONDS = env_float("LUMINET_LIMIT_WINDOW_SECONDS", 60.0)
REDIS_URL = env_str("REDIS_URL")
# Prefix of every Redis key (registry and channel layer), so deployments and test
# runs can share one Redis server.
LUMINET_REDIS_PREFIX = env_str("LUMINET_REDIS_PREFIX") or "luminet:"
# Seconds a stopping process (SIGTERM) gives its tunnel connections to move to other
# processes and its requests in flight to finish (tunnels.drain); 0 stops at once.
LUMINET_DRAIN_SECONDS = env_float("LUMINET_DRAIN_SECONDS", 30.0, zero=True)
# This server process's name among the processes sharing Redis: clients spread a
# tunnel's connections over names, and the admin shows which process holds which.
LUMINET_NODE = env_str("LUMINET_NODE") or f"{socket.gethostname()}-{os.getpid()}"


def parse_admin_host(value: str, tunnel_domain: str) -> str:
    """A bare host name for the admin, outside the tunnel wildcard (see the README)."""
    host = value.strip().lower().rstrip(".")
    if not host.replace("-", "").replace(".", "").isalnum() or ".." in host:
        raise ImproperlyConfigured(
            f"LUMINET_ADMIN_HOST must be a host name such as admin.example.net, not {value!r}"
        )
    if host == tunnel_domain or host.endswith(f".{tunnel_domain}"):
        raise ImproperlyConfigured(
            f"LUMINET_ADMIN_HOST {host!r} lies inside the tunnel domain {tunnel_domain!r}: "
            "tunnel pages could set its cookies; choose a host outside it"
        )
    return host


# The host that alone serves /admin/, /api/ and /metrics (tunnelsite.adminhost); unset:
# the main host serves them.
_admin_host = env_str("LUMINET_ADMIN_HOST")
LUMINET_ADMIN_HOST = parse_admin_host(_admin_host, LUMINET_TUNNEL_DOMAIN) if _admin_host else None
_admin_origin = (
    f"{LUMINET_PUBLIC_SCHEME}://{LUMINET_ADMIN_HOST}"
    + (f":{LUMINET_PUBLIC_PORT}" if LUMINET_PUBLIC_PORT else "")
    if LUMINET_ADMIN_HOST
    else LUMINET_PUBLIC_URL
)
LUMINET_ADMIN_URL = f"{_admin_origin}/admin/"

ALLOWED_HOSTS = [LUMINET_TUNNEL_DOMAIN, f".{LUMINET_TUNNEL_DOMAIN}"]
CSRF_TRUSTED_ORIGINS = [LUMINET_PUBLIC_URL]
if LUMINET_ADMIN_HOST:
    ALLOWED_HOSTS.append(LUMINET_ADMIN_HOST)
    CSRF_TRUSTED_ORIGINS.append(_admin_origin)

# With an https public URL the admin's cookies are secure-only and the main host is
# https-only. Behind Caddy, Django learns the scheme Caddy saw from the ASGI scope,
# which tunnels.edge.proxies rewrites from X-Forwarded-Proto for
# LUMINET_TRUSTED_PROXIES alone; SECURE_PROXY_SSL_HEADER stays unset, since Django
# would believe that header from any peer. Tunnel hosts never pass Django's
# middleware: their answers are the local server's own. HSTS covers the tunnel
# subdomains too: they are served over https by the same wildcard certificate.
_HTTPS = LUMINET_PUBLIC_SCHEME == "https"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _HTTPS
# The admin's cookies are host-only (no *_COOKIE_DOMAIN: never sent to, or settable
# from, tunnel hosts) and SameSite=Lax. Over https they take the __Host- prefix, which
# browsers accept only host-only, Secure and for Path=/: a tunnel page that sets a
# cookie of that name for a parent domain (cookie tossing) is refused by the browser.
SESSION_COOKIE_DOMAIN = CSRF_COOKIE_DOMAIN = None
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_NAME = "__Host-sessionid" if _HTTPS else "sessionid"
CSRF_COOKIE_NAME = "__Host-csrftoken" if _HTTPS else "csrftoken"
SECURE_SSL_REDIRECT = env_bool("LUMINET_SSL_REDIRECT", _HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^health$"]
SECURE_HSTS_SECONDS = int(env_float("LUMINET_HSTS_SECONDS", 31536000.0)) if _HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = _HTTPS
# Joining the browsers' preload list is hard to undo: the operator's decision
# (LUMINET_HSTS_PRELOAD=true), so its reminder is silenced rather than followed.
SECURE_HSTS_PRELOAD = env_bool("LUMINET_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = ["security.W021"]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "tokens",
    "tunnels",
    # The project itself, for its ``serve`` command (daphne with tunnelsite.server).
    "tunnelsite",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # The admin's CSS and JS (STATIC_URL), on the main host only: tunnel hosts never
    # pass this stack (tunnels.edge.router), so their /static/ is the local server's.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "tunnelsite.adminhost.AdminHostMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tunnelsite.urls"
ASGI_APPLICATION = "tunnelsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": parse_database_url(env_str("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "tunnels.relay.redislayer.LocalDeliveryLayer",
            "CONFIG": {
                # socket_timeout None: redis-py 8 otherwise times out idle
                # consumers after about 5 s (channels_redis#422). A connection
                # attempt is bounded, though: an unreachable Redis (a host that
                # drops packets) must fail a send, not hang it for the OS's minutes.
                "hosts": [
                    {"address": REDIS_URL, "socket_timeout": None, "socket_connect_timeout": 2}
                ],
                "prefix": f"{LUMINET_REDIS_PREFIX}asgi",
                # Flow-control windows (32 chunks a stream) keep queues below this;
                # it is a backstop. channels-redis also sizes each process's local
                # receive buffers by it, and silently drops the oldest beyond it.
                "capacity": 10000,
                "expiry": 60,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "tunnels.relay.layers.InProcessChannelLayer",
            "CONFIG": {"capacity": 10000, "expiry": 60},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
# Where `manage.py collectstatic` gathers the admin's files, which WhiteNoise serves
# (with DEBUG it finds them in the apps, without collectstatic).
STATIC_ROOT: Path | None = Path(env_str("LUMINET_STATIC_ROOT") or BASE_DIR / "var" / "static")
# WhiteNoise's middleware is synchronous: Django runs it on a worker thread and hands
# the ASGI server the file as a sync iterator, read in that thread (the admin's files
# are small), with a warning saying so at its first file. Expected here, so silenced.
warnings.filterwarnings(
    "ignore", message="StreamingHttpResponse must consume synchronous iterators", category=Warning
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {
        # daphne's "HTTP/2 support not enabled (install the http2 and tls Twisted
        # extras)" reads as advice: HTTP/2 is the proxy's job here (Caddy), not daphne's.
        # "Configuring endpoint tcp:port=…" says again what "Listening on" says.
        "no_http2_advice": {
            "()": "django.utils.log.CallbackFilter",
            "callback": lambda record: (
                not record.getMessage().startswith(("HTTP/2 support", "Configuring endpoint"))
            ),
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "tunnels": {"level": env_str("LUMINET_LOG_LEVEL") or "INFO"},
        "tokens": {"level": env_str("LUMINET_LOG_LEVEL") or "INFO"},
        "tunnelsite": {"level": env_str("LUMINET_LOG_LEVEL") or "INFO"},
        # "Listening on TCP address ..." is how scripts and tests learn the port.
        "daphne.server": {"level": "INFO", "filters": ["no_http2_advice"]},
    },
}
