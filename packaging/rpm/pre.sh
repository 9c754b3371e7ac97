# %pre: the same users as systemd/latch.sysusers, made the classic way
# because the sysusers file is not on disk yet.
getent group latch >/dev/null || groupadd -r latch
getent group latch-admin >/dev/null || groupadd -r latch-admin
getent passwd latch >/dev/null || \
	useradd -r -g latch -d /var/lib/latch -s /sbin/nologin -c "latch authentication daemon" latch
exit 0
