#!/bin/sh
# The image's entrypoint: start as root, become the owner of the data folder, drop every
# capability, then run the service (the command given).
#
# Why: the files chute writes into the data folder (work/, archive/, quarantine/, reason
# files) must belong to whoever owns that folder on the host, whatever its UID. So the
# UID and GID are read from the mounted folder at every start, never baked into the
# image, and nothing of the user's is ever chowned.
#
# When root owns the folder, only UID 0 can write files that belong to root, so the
# service keeps UID 0, but with no capability at all (bounding, inheritable and so
# permitted and effective sets empty, no new privileges): it cannot override permission
# bits, change owners or gain anything back, so it writes only where root's own mode bits
# let it, as a host process of that user would.
#
# Started as another user already (`docker run --user`, compose `user:`), it runs the
# command as it is. Without a mounted folder (the api), the image's own /data, which
# belongs to the unprivileged `chute` user, decides.
set -eu
data="${CHUTE_DATA_DIR:-/data}"
if [ "$(id -u)" != 0 ]; then
    exec "$@"
fi
owner=$(stat -c %u:%g "$data" 2>/dev/null) || owner="$(id -u chute):$(id -g chute)"
# The UID may have no account here, so no home either; root's (inherited) is not ours to
# read: asyncpg's look for ~/.pgpass there failed the API's connections.
export HOME=/nonexistent
exec setpriv --reuid="${owner%:*}" --regid="${owner#*:}" --clear-groups \
    --inh-caps=-all --bounding-set=-all --no-new-privs -- "$@"
