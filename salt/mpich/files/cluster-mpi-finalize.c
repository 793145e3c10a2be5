/*
 * cluster-mpi-finalize: makes MPI_Finalize end on Debian 12's MPICH 4.0.2 (ch4:ucx over TCP).
 *
 * Why: MPICH 4.0.2 finalizes UCX by closing every endpoint in flush mode, waiting for the
 * closes, and only then entering a blocking PMI barrier. UCX's TCP transport (1.13) flushes an
 * endpoint by sending a zero-byte PUT and waiting for the peer's ACK, which the peer sends only
 * while it still progresses UCX. A rank that finished its own closes early sits in the PMI
 * barrier (a blocking read on the PMI socket) and never ACKs a slower peer's flush: that peer
 * busy-polls forever and mpiexec never returns. Seen on the lab in about 4 runs of 10 with 4
 * ranks; reproduced on one host with 4 ranks over UCX TCP on loopback (8 hangs in 20 runs).
 * MPICH 4.2.0 fixed it upstream by moving the PMI barrier before the closes.
 *
 * What: this library does that barrier itself before PMPI_Finalize. Once every rank is past
 * it, every rank goes straight into its closes and progresses UCX until they are done, so every
 * flush gets its ACK. The barrier is PMI-1's own wire command (cmd=barrier_in / barrier_out) on
 * the socket mpiexec gave the rank (PMI_FD); MPICH does not export its PMI client. A rank
 * started without mpiexec (no PMI_FD) has no peers and goes straight to PMPI_Finalize.
 *
 * How it is used: mpiexec preloads it into every rank (-genv LD_PRELOAD in Hydra's system
 * config file, salt/mpich), so programs need no change and no rebuild.
 *
 * Managed by Salt (salt/mpich); built on each compute node with mpicc. Remove it (and the
 * Hydra config line) with an MPICH of 4.2.0 or later.
 */
#include <errno.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int write_all(int fd, const char *text)
{
    size_t left = strlen(text);

    while (left > 0) {
        ssize_t written = write(fd, text, left);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        text += written;
        left -= (size_t)written;
    }
    return 0;
}

/* PMI-1 barrier over the rank's PMI socket: 0 once every rank has entered it, -1 on error.
 * Reads one byte at a time so that nothing after the reply line is taken from MPICH. */
static int pmi_barrier(int fd)
{
    char line[256], c;
    size_t len = 0;

    if (write_all(fd, "cmd=barrier_in\n") != 0)
        return -1;
    for (;;) {
        ssize_t got = read(fd, &c, 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        if (c != '\n') {
            if (len < sizeof(line) - 1)
                line[len++] = c;
            continue;
        }
        line[len] = '\0';
        if (strstr(line, "cmd=barrier_out") != NULL)
            return 0;
        len = 0;
    }
}

int MPI_Finalize(void)
{
    const char *pmi_fd = getenv("PMI_FD");

    /* without a working barrier, finalize as MPICH would (it may then hang as before) */
    if (pmi_fd != NULL && *pmi_fd != '\0')
        (void)pmi_barrier(atoi(pmi_fd));
    return PMPI_Finalize();
}
