/* open_loop N PATH: open(PATH, O_RDONLY) + close, N times. One op = openat + close.
 * PATH must exist and be readable; the first failure stops the loop with an error. */
#include <fcntl.h>
#include <unistd.h>

#include "common.h"

int main(int argc, char **argv)
{
	long n, i;
	double t0;

	if (argc < 3) {
		fprintf(stderr, "usage: open_loop N PATH\n");
		return 1;
	}
	n = parse_count(argv[1]);
	t0 = now_s();
	for (i = 0; i < n; i++) {
		int fd = open(argv[2], O_RDONLY);

		if (fd < 0)
			die(argv[2]);
		close(fd);
	}
	report("open", n, now_s() - t0);
	return 0;
}
