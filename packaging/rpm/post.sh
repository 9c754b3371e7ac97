# %post: the state directory (the unit's StateDirectory= makes it too), then
# the distribution's preset on first install (enable, do not start).
[ -d /var/lib/latch ] || install -d -m 0750 -o latch -g latch /var/lib/latch
if [ "$1" -eq 1 ]; then
	systemctl --no-reload preset latch.service >/dev/null 2>&1 || :
fi
exit 0
