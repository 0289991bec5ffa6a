/* One object for both programs, so the connection limit in the IP guard and the tracker
 * that keeps the live counts share their maps. */
#include "ip_guard.bpf.c"
#include "conn_track.bpf.c"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
