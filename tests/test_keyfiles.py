"""
Tests for L{ztnagw.keyfiles}.
"""

import os
import stat

from twisted.trial.unittest import SynchronousTestCase

from ztnagw.keyfiles import privateFileProblem, writePrivateFile, writePublicFile


class WritePrivateFileTests(SynchronousTestCase):
    """
    L{writePrivateFile} creates secret files no one else can read.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()

    def test_modeFromTheStart(self) -> None:
        """
        The file is created with mode 0600 and its new directory with 0700,
        whatever the umask.
        """
        old = os.umask(0)
        self.addCleanup(os.umask, old)
        path = os.path.join(self.directory, "sub", "ca.key")
        writePrivateFile(path, b"secret")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(
            stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), 0o700
        )
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"secret")

    def test_replaceLeavesNoTemporary(self) -> None:
        """
        Writing again replaces the content and leaves no temporary file.
        """
        path = os.path.join(self.directory, "k")
        writePrivateFile(path, b"one")
        writePrivateFile(path, b"two")
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"two")
        self.assertEqual(os.listdir(self.directory), ["k"])

    def test_publicFile(self) -> None:
        """
        L{writePublicFile} writes a world-readable certificate file, even
        under a restrictive umask.
        """
        old = os.umask(0o077)
        self.addCleanup(os.umask, old)
        path = os.path.join(self.directory, "c.crt")
        writePublicFile(path, b"cert")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o644)


class PrivateFileProblemTests(SynchronousTestCase):
    """
    L{privateFileProblem} refuses secrets that others can read.
    """

    def test_fine(self) -> None:
        """
        A 0600 file is fine.
        """
        path = self.mktemp()
        writePrivateFile(path, b"x")
        self.assertIsNone(privateFileProblem(path))

    def test_groupReadable(self) -> None:
        """
        A group- or world-accessible file is refused with the chmod to run.
        """
        path = self.mktemp()
        writePrivateFile(path, b"x")
        for mode in (0o640, 0o604, 0o610, 0o644):
            os.chmod(path, mode)
            problem = privateFileProblem(path)
            self.assertIsNotNone(problem)
            self.assertIn(f"chmod 600 {path}", problem)

    def test_notRegular(self) -> None:
        """
        A directory is not a key file.
        """
        path = self.mktemp()
        os.mkdir(path, 0o700)
        self.assertIn("not a regular file", privateFileProblem(path))

    def test_missing(self) -> None:
        """
        A missing file raises L{OSError}: the caller says it is missing.
        """
        self.assertRaises(OSError, privateFileProblem, self.mktemp())
