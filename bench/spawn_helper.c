/* The smallest "worker" for the posix_spawn-until-ready floor: it tells its
 * parent it is up by writing one byte to fd 3, then exits. */
#include <unistd.h>

int main(void) {
  char c = 'r';
  return write(3, &c, 1) == 1 ? 0 : 1;
}
