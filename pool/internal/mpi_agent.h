// The node agent of the MPI backend: what every rank other than 0 runs.
//
// An agent waits for the front end (rank 0) to send a pool configuration,
// starts a local LocalDriver of worker processes with it, answers with its
// plugin manifest (or the error that kept the pool from starting), and then
// relays: calls from the front end go into the local pool, results go back
// in batches. Plugin code only ever runs in the local pool's workers, so a
// crashing task fails that task alone and the agent's pool replaces the
// worker. When the front end ends the pool, the agent destroys its local
// pool and waits for the next one, until the front end's Session ends.
//
// The agent never blocks in MPI: it polls with MPI_Improbe. While tasks
// run in its pool it waits for their answers, woken the moment one is done
// (so an answer is never left waiting), polling MPI for more calls at
// least every 50 us. Idle, it polls without sleeping for 1 ms after the
// last message (yielding the CPU), so a caller's next call is taken within
// microseconds, then sleeps a little between polls (PollBackoff: 20 us
// for 50 ms, then doubling up to 2 ms; 10 ms with no pool). If the front end stays silent
// longer than the pool's MpiOptions::agent_timeout while a pool is
// running, the agent stops its workers and aborts the MPI
// job (MPI_Abort): there is no one left to answer.

#ifndef PROCPOOL_POOL_INTERNAL_MPI_AGENT_H_
#define PROCPOOL_POOL_INTERNAL_MPI_AGENT_H_

namespace procpool::internal {

// Serves as a node agent until the front end says the job is over. Blocks.
// Needs MpiWorld to be set (by a Session) on a rank other than 0. Returns
// the process's exit code: 0 after the front end's exit message, 1 if MPI
// failed.
int RunMpiAgent();

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_MPI_AGENT_H_
