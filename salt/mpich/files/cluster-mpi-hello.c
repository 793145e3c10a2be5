/*
 * cluster-mpi-hello: the smallest useful check of an MPI job across the compute nodes.
 *
 * Every rank contributes rank + 1 to an MPI_Allreduce (sum) over MPI_COMM_WORLD, then prints
 * its rank, the number of ranks, the host it runs on, the reduced sum and whether the sum is
 * n(n+1)/2. The exit status is 0 only when every rank got the right sum.
 *
 * Managed by Salt (salt/mpich); built on each node with mpicc.
 *
 *   mpiexec -f /etc/mpich/hosts -n 4 cluster-mpi-hello
 */
#include <mpi.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    int rank, size, name_len, ok;
    long contribution, sum = 0, expected;
    char host[MPI_MAX_PROCESSOR_NAME];

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_processor_name(host, &name_len);

    contribution = (long)rank + 1;
    MPI_Allreduce(&contribution, &sum, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    expected = (long)size * (size + 1) / 2;
    ok = (sum == expected);

    printf("rank %d of %d on %s: sum of rank+1 over all ranks = %ld, expected n(n+1)/2 = %ld: %s\n",
           rank, size, host, sum, expected, ok ? "OK" : "WRONG");
    fflush(stdout);

    MPI_Finalize();
    return ok ? 0 : 1;
}
