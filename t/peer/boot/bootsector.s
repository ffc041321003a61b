# The bootable guest's BIOS boot sector (SPEC §14, t/peer/README.md
# "A disk that boots").  It prints
#
#     VMFERRY-BOOT-OK gen=<N>\r\n
#
# on the first serial port (COM1, I/O 0x3F8, 115200 8N1), N being the
# little-endian uint32 at byte 12 of the generation sector (LBA 1), read
# through BIOS int 13h from the drive the BIOS booted.  The generation
# sector starts with the 12 bytes "VMFERRY-GEN:"; without them (or when the
# read fails) it prints a VMFERRY-BOOT-FAIL line instead.  Then it writes 0
# to port 0xF4 (QEMU's isa-debug-exit device, when present, ends QEMU; on
# other machines nothing listens there) and halts for good.
#
# Built from this source when a fixture asks for a bootable disk, with
# binutils only:
#     as --32 -o bootsector.o bootsector.s
#     ld -m elf_i386 --oformat binary -Ttext 0x7c00 -e _start -o bootsector.bin bootsector.o
# The result is exactly 512 bytes ending in 55 AA (t/peer/boot.go checks).

	.code16
	.text
	.globl _start
_start:
	cli
	xorw	%ax, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	$0x7c00, %sp
	ljmp	$0, $start		# CS:IP = 0000:7Cxx whatever the BIOS used
start:
	sti
	cld
	movb	%dl, drive		# the BIOS passes the boot drive in DL
	call	serial_init

	movw	$3, %di			# read LBA 1 = CHS 0/0/2 to 0000:7E00, 3 tries
read:
	movw	$0x0201, %ax		# AH 02h: read sectors, AL: 1 sector
	movw	$0x0002, %cx		# CH cylinder 0, CL sector 2
	xorb	%dh, %dh		# head 0
	movb	drive, %dl
	movw	$gensec, %bx		# ES:BX
	int	$0x13
	jnc	readok
	xorb	%ah, %ah		# AH 00h: reset the drive, then try again
	movb	drive, %dl
	int	$0x13
	decw	%di
	jnz	read
	movw	$msg_readerr, %si
	jmp	failed

readok:
	movw	$magic, %si
	movw	$gensec, %di
	movw	$magic_end - magic, %cx
	repe cmpsb
	jne	badmagic
	movw	$msg_ok, %si
	call	puts
	movl	gensec + 12, %eax
	call	putdec
	movw	$msg_crlf, %si
	call	puts
	jmp	done

badmagic:
	movw	$msg_nogen, %si
failed:
	call	puts
done:
	movw	$0xf4, %dx		# isa-debug-exit
	xorb	%al, %al
	outb	%al, %dx
halt:
	cli
	hlt
	jmp	halt

# serial_init: COM1 at 115200 baud, 8 data bits, no parity, 1 stop bit.
serial_init:
	movw	$0x3f9, %dx		# IER: no interrupts
	xorb	%al, %al
	outb	%al, %dx
	movw	$0x3fb, %dx		# LCR: DLAB on
	movb	$0x80, %al
	outb	%al, %dx
	movw	$0x3f8, %dx		# divisor 1 (low byte)
	movb	$1, %al
	outb	%al, %dx
	movw	$0x3f9, %dx		# divisor high byte
	xorb	%al, %al
	outb	%al, %dx
	movw	$0x3fb, %dx		# LCR: 8N1, DLAB off
	movb	$0x03, %al
	outb	%al, %dx
	movw	$0x3fa, %dx		# FCR: FIFOs on and cleared
	movb	$0xc7, %al
	outb	%al, %dx
	movw	$0x3fc, %dx		# MCR: DTR, RTS
	movb	$0x03, %al
	outb	%al, %dx
	ret

# putc: AL to COM1 once its transmit holding register is empty (a port
# nobody answers reads 0xFF, which says empty too).  Keeps every register.
putc:
	pushw	%dx
	pushw	%ax
	movw	$0x3fd, %dx		# LSR
1:	inb	%dx, %al
	testb	$0x20, %al
	jz	1b
	popw	%ax
	movw	$0x3f8, %dx
	outb	%al, %dx
	popw	%dx
	ret

# puts: the NUL-terminated string at DS:SI.
puts:
	lodsb
	testb	%al, %al
	jz	1f
	call	putc
	jmp	puts
1:	ret

# putdec: EAX in decimal.
putdec:
	movl	$10, %ebx
	xorw	%cx, %cx
1:	xorl	%edx, %edx
	divl	%ebx
	pushw	%dx
	incw	%cx
	testl	%eax, %eax
	jnz	1b
2:	popw	%ax
	addb	$'0', %al
	call	putc
	loop	2b
	ret

drive:		.byte 0
magic:		.ascii "VMFERRY-GEN:"
magic_end:
msg_ok:		.asciz "VMFERRY-BOOT-OK gen="
msg_crlf:	.asciz "\r\n"
msg_nogen:	.asciz "VMFERRY-BOOT-FAIL no generation sector\r\n"
msg_readerr:	.asciz "VMFERRY-BOOT-FAIL disk read error\r\n"

	.org	510
	.byte	0x55, 0xaa
gensec = 0x7e00			# where the generation sector is read to

	.section .note.GNU-stack, "", @progbits
