/* connect_loop N: TCP connect to a listener on 127.0.0.1 (a thread of this process) and
 * close, N times. One op = socket + connect + accept + close on both sides.
 *
 * Lock-step: the listener accepts and closes; the client waits for that EOF before the
 * next connect, so the accept queue never overflows (an overflow costs a 1 s SYN retry).
 * The client closes with SO_LINGER 0 (RST), which also clears the listener side's
 * TIME_WAIT entry, so N is not limited by the ephemeral port range. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

static int listener;

static void *serve(void *arg)
{
	long n = *(long *)arg, i;

	for (i = 0; i < n; i++) {
		int c = accept(listener, NULL, NULL);

		if (c < 0)
			die("accept");
		close(c);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	struct linger rst = { .l_onoff = 1, .l_linger = 0 };
	socklen_t alen = sizeof(addr);
	pthread_t th;
	long n, i;
	double t0;
	char b;

	if (argc < 2) {
		fprintf(stderr, "usage: connect_loop N\n");
		return 1;
	}
	n = parse_count(argv[1]);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	listener = socket(AF_INET, SOCK_STREAM, 0);
	if (listener < 0)
		die("socket");
	if (bind(listener, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		die("bind 127.0.0.1:0");
	if (listen(listener, 128) < 0)
		die("listen");
	if (getsockname(listener, (struct sockaddr *)&addr, &alen) < 0)
		die("getsockname");
	if (pthread_create(&th, NULL, serve, &n))
		die("pthread_create");
	t0 = now_s();
	for (i = 0; i < n; i++) {
		int s = socket(AF_INET, SOCK_STREAM, 0);

		if (s < 0)
			die("socket");
		if (connect(s, (struct sockaddr *)&addr, sizeof(addr)) < 0)
			die("connect 127.0.0.1");
		if (read(s, &b, 1) < 0)
			die("read");
		setsockopt(s, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
		close(s);
	}
	pthread_join(th, NULL);
	report("connect", n, now_s() - t0);
	close(listener);
	return 0;
}
