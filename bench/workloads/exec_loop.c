/* exec_loop N [PROGRAM]: fork, exec PROGRAM (default /bin/true) and wait, N times.
 * One op = fork + execve + exit + waitpid. */
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

int main(int argc, char **argv)
{
	const char *prog = argc > 2 ? argv[2] : "/bin/true";
	long n, i;
	double t0;

	if (argc < 2) {
		fprintf(stderr, "usage: exec_loop N [PROGRAM]\n");
		return 1;
	}
	n = parse_count(argv[1]);
	t0 = now_s();
	for (i = 0; i < n; i++) {
		int status;
		pid_t pid = fork();

		if (pid < 0)
			die("fork");
		if (pid == 0) {
			execl(prog, prog, (char *)NULL);
			_exit(127);
		}
		if (waitpid(pid, &status, 0) < 0)
			die("waitpid");
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "%s did not exit 0 (status 0x%x)\n", prog, status);
			return 1;
		}
	}
	report("exec", n, now_s() - t0);
	return 0;
}
