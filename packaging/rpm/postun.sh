# %postun: on upgrade restart a running service with the new binary. Erase
# keeps /etc/latch and /var/lib/latch (rpm has no purge; remove them by hand).
systemctl daemon-reload >/dev/null 2>&1 || :
if [ "$1" -ge 1 ]; then
	systemctl try-restart latch.service >/dev/null 2>&1 || :
fi
exit 0
