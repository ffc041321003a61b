/* Files a configuration names, relative to its directory: opened as
 * regular files only, and secrets (a password, a token) read from their
 * first line. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/config_int.h"
#include "engine/core/util.h"

#define SECRET_MAX 4096

char *
cfg_path_join(const char *dir, const char *name)
{
	size_t l;

	if (name[0] == '/' || dir == NULL || dir[0] == '\0')
		return xstrdup(name);
	l = strlen(dir);
	if (dir[l - 1] == '/')
		return xasprintf("%s%s", dir, name);
	return xasprintf("%s/%s", dir, name);
}

/* O_NONBLOCK and the regular-file check keep a FIFO or a device from
 * hanging the loader. */
int
cfg_open_regular(const char *path, struct stat *st)
{
	int fd;

	if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0)
		return -1;
	if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
		close(fd);
		return -2;
	}
	return fd;
}

/* Reads the first line of a regular file (the secret), at most SECRET_MAX
 * bytes. */
int
cfg_read_secret(const char *path, char **out, const char **why, int *sys)
{
	char buf[SECRET_MAX + 1];
	struct stat st;
	size_t len = 0;
	ssize_t r;
	char *nl;
	int fd;

	*why = NULL;
	*sys = 1;
	if ((fd = cfg_open_regular(path, &st)) == -1) {
		*why = strerror(errno);
		return -1;
	}
	*sys = 0;
	if (fd < 0) {
		*why = "is not a regular file";
		return -1;
	}
	while (len < SECRET_MAX) {
		r = read(fd, buf + len, SECRET_MAX - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*why = strerror(errno);
			*sys = 1;
			close(fd);
			explicit_bzero(buf, sizeof(buf));
			return -1;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (memchr(buf, '\n', len) != NULL)
			break;
	}
	close(fd);
	buf[len] = '\0';
	if ((nl = memchr(buf, '\n', len)) != NULL)
		len = (size_t)(nl - buf);
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (memchr(buf, '\0', len) != NULL)
		*why = "contains a NUL byte";
	else if (len == 0)
		*why = "is empty";
	if (*why != NULL) {
		explicit_bzero(buf, sizeof(buf));
		return -1;
	}
	*out = xstrndup(buf, len);
	explicit_bzero(buf, sizeof(buf));
	return 0;
}
