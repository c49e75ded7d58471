"""
Tests for L{ztnagw.privileges}: the start-up work runs as the user twistd
drops to.
"""

from __future__ import annotations

import os
import pwd
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ztnagw.privileges import startupIdentity, twistdIdentity


class FakeSystem:
    """
    The identity calls of L{os}, recorded.

    @ivar calls: C{(name, argument)} in order.
    """

    def __init__(self, euid: int = 0) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.euid = euid
        self.egid = 0
        self.groups = [0, 4]

    def geteuid(self) -> int:
        return self.euid

    def getegid(self) -> int:
        return self.egid

    def getgroups(self) -> list[int]:
        return list(self.groups)

    def seteuid(self, uid: int) -> None:
        self.calls.append(("seteuid", uid))
        self.euid = uid

    def setegid(self, gid: int) -> None:
        if self.euid != 0:
            raise PermissionError("only root may change its group")
        self.calls.append(("setegid", gid))
        self.egid = gid

    def setgroups(self, groups: list[int]) -> None:
        if self.euid != 0:
            raise PermissionError("only root may change its groups")
        self.calls.append(("setgroups", list(groups)))
        self.groups = list(groups)


class StartupIdentityTests(SynchronousTestCase):
    """
    L{startupIdentity}.
    """

    def test_switchAndBack(self) -> None:
        """
        As root with a user to become: groups and group first, the user
        last; inside, the effective ids are the user's; afterwards, root's
        again, in reverse order.
        """
        system = FakeSystem()
        nobody = pwd.getpwnam("nobody")
        with startupIdentity(nobody.pw_uid, nobody.pw_gid, system):
            self.assertEqual((system.euid, system.egid), (nobody.pw_uid, nobody.pw_gid))
            self.assertIn(nobody.pw_gid, system.groups)
        self.assertEqual(
            [name for name, _ in system.calls],
            ["setgroups", "setegid", "seteuid", "seteuid", "setegid", "setgroups"],
        )
        self.assertEqual((system.euid, system.egid, system.groups), (0, 0, [0, 4]))

    def test_restoredOnError(self) -> None:
        """
        An exception inside (a start-up failure) still restores root, so
        that twistd can report it and exit.
        """
        system = FakeSystem()
        with self.assertRaises(ValueError):
            with startupIdentity(65534, 65534, system):
                raise ValueError("no")
        self.assertEqual((system.euid, system.egid, system.groups), (0, 0, [0, 4]))

    def test_nothingToBecome(self) -> None:
        """
        Without C{--uid}/C{--gid}, nothing changes.
        """
        system = FakeSystem()
        with startupIdentity(None, None, system):
            pass
        self.assertEqual(system.calls, [])

    def test_notRoot(self) -> None:
        """
        Not root, nothing changes (twistd itself will fail to switch and
        say so).
        """
        system = FakeSystem(euid=1000)
        with startupIdentity(65534, 65534, system):
            pass
        self.assertEqual(system.calls, [])

    def test_groupOnly(self) -> None:
        """
        With only C{--gid}, only the group changes.
        """
        system = FakeSystem()
        with startupIdentity(None, 65534, system):
            self.assertEqual((system.euid, system.egid, system.groups), (0, 65534, [65534]))
        self.assertEqual((system.egid, system.groups), (0, [0, 4]))

    def test_unknownUser(self) -> None:
        """
        A numeric uid without a passwd entry gets its group alone.
        """
        system = FakeSystem()
        unknown = 54321
        while True:
            try:
                pwd.getpwuid(unknown)
            except KeyError:
                break
            unknown += 1
        with startupIdentity(unknown, 54321, system):
            self.assertEqual(system.groups, [54321])

    def test_real(self) -> None:
        """
        The real thing, as root: a file made inside belongs to the user.
        """
        if os.geteuid() != 0:
            raise self.skipTest("needs root")
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        # trial makes the directory above private (0700).
        os.chmod(os.path.dirname(directory), 0o755)
        nobody = pwd.getpwnam("nobody")
        os.chown(directory, nobody.pw_uid, nobody.pw_gid)
        path = os.path.join(directory, "made")
        with startupIdentity(nobody.pw_uid, nobody.pw_gid):
            with open(path, "w") as f:
                f.write("x")
            self.assertRaises(PermissionError, os.open, "/etc/shadow", os.O_RDONLY)
        self.assertEqual((os.geteuid(), os.getegid()), (0, 0))
        status = os.stat(path)
        self.assertEqual((status.st_uid, status.st_gid), (nobody.pw_uid, nobody.pw_gid))


class TwistdIdentityTests(SynchronousTestCase):
    """
    L{twistdIdentity} reads twistd's C{--uid}/C{--gid}.
    """

    def test_parent(self) -> None:
        """
        The plugin options' parent holds twistd's choice; a uid without a
        gid means the user's own group, as twistd decides.
        """
        from twisted.scripts.twistd import ServerOptions

        nobody = pwd.getpwnam("nobody")
        options = ServerOptions()
        options.parseOptions(["--uid", "nobody", "ztnagw", "--config", "x.conf"])
        self.assertEqual(twistdIdentity(options.subOptions), (nobody.pw_uid, nobody.pw_gid))
        options = ServerOptions()
        options.parseOptions(["--uid", "nobody", "--gid", "0", "ztnagw", "--config", "x.conf"])
        self.assertEqual(twistdIdentity(options.subOptions), (nobody.pw_uid, 0))
        options = ServerOptions()
        options.parseOptions(["ztnagw", "--config", "x.conf"])
        self.assertEqual(twistdIdentity(options.subOptions), (None, None))

    def test_noParent(self) -> None:
        """
        Options used outside twistd keep the identity.
        """
        from ztnagw.tap import Options

        self.assertEqual(twistdIdentity(Options()), (None, None))
